package apimemory

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/redact"
)

func readFixture(f *testing.F, rel string) []byte {
	f.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", rel))
	require.NoError(f, err)
	return b
}

func checkReading(t *testing.T, r cgroupReading) {
	t.Helper()
	for _, v := range []float64{r.workingSet, r.limit, r.oomKills} {
		require.False(t, v < 0 || math.IsNaN(v) || math.IsInf(v, 0), "reading %+v", r)
	}
	if !r.hasOOMKills {
		require.Zero(t, r.oomKills)
	}
}

func FuzzCgroupV2(f *testing.F) {
	for _, dir := range []string{v2PodCgroup, v2SvcCgroup} {
		f.Add(readFixture(f, dir+"/memory.current"), readFixture(f, dir+"/memory.stat"),
			readFixture(f, dir+"/memory.events"), readFixture(f, dir+"/memory.max"), []byte("2147483648\n"))
	}
	f.Add([]byte("0"), []byte("inactive_file 0"), []byte(""), []byte("max"), []byte("max"))
	f.Fuzz(func(t *testing.T, current, stat, events, max, parentMax []byte) {
		r, err := parseCgroupV2(current, stat, events, max, parentMax)
		if err != nil {
			return
		}
		checkReading(t, r)
		usage, _ := parseSingleValue(current)
		require.LessOrEqual(t, r.workingSet, float64(usage))
	})
}

func FuzzCgroupV1(f *testing.F) {
	for _, dir := range []string{v1PodCgroup, v1SvcCgroup} {
		f.Add(readFixture(f, dir+"/memory.usage_in_bytes"), readFixture(f, dir+"/memory.limit_in_bytes"),
			readFixture(f, dir+"/memory.stat"), readFixture(f, dir+"/memory.oom_control"))
	}
	f.Add([]byte("1"), []byte("9223372036854771712"), []byte("inactive_file 2"), []byte("oom_kill 1"))
	f.Fuzz(func(t *testing.T, usage, limit, stat, oomControl []byte) {
		r, err := parseCgroupV1(usage, limit, stat, oomControl)
		if err != nil {
			return
		}
		checkReading(t, r)
		require.Less(t, r.limit, float64(v1UnlimitedFrom))
	})
}

// FuzzMetricsParse checks that reading only the process_* lines never
// loses what parsing the whole exposition finds, and never panics.
func FuzzMetricsParse(f *testing.F) {
	// The capture in pieces of whole families: small inputs keep the
	// fuzzer's minimisation of new inputs fast.
	for _, family := range bytes.SplitAfter(readFixture(f, "apiserver-metrics.txt"), []byte("\n# HELP ")) {
		f.Add(family)
	}
	f.Add([]byte("process_resident_memory_bytes 1\nprocess_start_time_seconds 2"))
	f.Add([]byte("# TYPE process_resident_memory_bytes gauge\n{\"process_resident_memory_bytes\",a=\"b\"} 1e3\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := parseProcessMetrics(bytes.NewReader(body))
		if errors.Is(err, errTooLarge) {
			return // a limit the whole-exposition parser does not have
		}
		if err == nil {
			require.False(t, got.residentBytes < 0 || math.IsNaN(got.residentBytes) || math.IsInf(got.residentBytes, 0))
			require.False(t, got.startTime < 0 || math.IsNaN(got.startTime) || math.IsInf(got.startTime, 0))
		}

		families, fullErr := parseText(body)
		if fullErr != nil {
			return
		}
		want, wantErr := processMetricsFrom(families)
		if wantErr != nil {
			return
		}
		require.NoError(t, err, "the whole exposition parses to %+v", want)
		require.Equal(t, want, got)
	})
}

// FuzzEndpointSpecPassword: whatever surrounds it, a password in an
// endpoint's URL never appears in ParseEndpointSpec's error, nor in the
// URL the exporter logs.
func FuzzEndpointSpecPassword(f *testing.F) {
	f.Add("r=", "http", "user", "host:6443/metrics")
	f.Add("", "https", "u", "")
	f.Add("r=", "ftp", "user", "host:bad port/x")
	f.Add("a b=", "http", "", "[::1]:x/%zz")
	f.Fuzz(func(t *testing.T, prefix, scheme, user, rest string) {
		const password = "Pa55w0rdSecret"
		spec, err := ParseEndpointSpec(prefix + scheme + "://" + user + ":" + password + "@" + rest)
		if err != nil {
			require.NotContains(t, err.Error(), password)
			return
		}
		require.NotContains(t, redact.URL(spec.URL), password)
	})
}
