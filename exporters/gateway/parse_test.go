package gateway

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/contract"
	"github.com/cascade-sre/cascade/internal/testenv"
)

const (
	leaseRoute = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
	nodeStatus = "/api/v1/nodes/{name}/status"
)

func req(route, method, code, client string) string {
	return `cascade_gateway_requests_total{client="` + client + `",code="` + code + `",method="` + method + `",route="` + route + `"}`
}

func timeouts(route, client string) string {
	return `cascade_gateway_timeouts_total{client="` + client + `",route="` + route + `"}`
}

func durationCount(route, client string) string {
	return `cascade_gateway_request_duration_seconds_count{client="` + client + `",route="` + route + `"}`
}

func durationSum(route, client string) string {
	return `cascade_gateway_request_duration_seconds_sum{client="` + client + `",route="` + route + `"}`
}

// TestFixtures reads each format's fixture and checks every series: routes,
// methods, codes, client classes, latencies, timeouts, and malformed lines.
func TestFixtures(t *testing.T) {
	for _, tc := range []struct {
		format    Format
		file      string
		parsed    float64
		malformed float64
		want      map[string]float64
	}{{
		format: FormatNginxJSON, file: "nginx-json.log", parsed: 10, malformed: 4,
		want: map[string]float64{
			req(leaseRoute, "PUT", "200", "kubelet"):                                                                1,
			req(leaseRoute, "PUT", "504", "kubelet"):                                                                1,
			req(leaseRoute, "PUT", "502", "kubelet"):                                                                1,
			req(nodeStatus, "PATCH", "200", "kubelet"):                                                              1,
			req("/api/v1/watch/namespaces/{namespace}/pods", "GET", "200", "controller"):                            1,
			req("/api/v1/pods", "GET", "200", "kubectl"):                                                            1,
			req("/apis/apps/v1/namespaces/{namespace}/deployments", "POST", "201", "controller"):                    1,
			req("/apis/{group}/v1/namespaces/{namespace}/{resource}/{name}", "GET", "404", "other"):                 1,
			req("/healthz", "GET", "200", "other"):                                                                  1,
			req("/api/v1/namespaces/{namespace}/configmaps/{name}", "GET", "200", "other"):                          1,
			timeouts(leaseRoute, "kubelet"):                                                                         2, // 504, and upstream "502, 504"
			durationCount(leaseRoute, "kubelet"):                                                                    3,
			durationSum(leaseRoute, "kubelet"):                                                                      20.007,
			durationSum("/api/v1/watch/namespaces/{namespace}/pods", "controller"):                                  412.22,
			durationCount("/api/v1/namespaces/{namespace}/configmaps/{name}", "other"):                              1,
			`cascade_gateway_log_lines_total{result="parsed"}`:                                                      10,
			`cascade_gateway_log_lines_total{result="malformed"}`:                                                   4,
			`cascade_gateway_routes_over_limit_total`:                                                               0,
			`cascade_gateway_timeouts_total{client="controller",route="/api/v1/watch/namespaces/{namespace}/pods"}`: 0,
		},
	}, {
		format: FormatEnvoyJSON, file: "envoy-json.log", parsed: 6, malformed: 2,
		want: map[string]float64{
			req(leaseRoute, "PUT", "200", "kubelet"):                            1,
			req(leaseRoute, "PUT", "504", "kubelet"):                            1,
			req(nodeStatus, "PATCH", "200", "kubelet"):                          1,
			req("/api/v1/watch/pods", "GET", "200", "controller"):               1,
			req("/api/v1/namespaces/default/services", "GET", "503", "kubectl"): 1,
			req("/version", "GET", "0", "controller"):                           1,
			timeouts(leaseRoute, "kubelet"):                                     1, // 504 with UT counts once
			timeouts("/api/v1/watch/pods", "controller"):                        1, // UMSDR
			durationSum(leaseRoute, "kubelet"):                                  10.005,
			durationSum(nodeStatus, "kubelet"):                                  0.012,
			durationSum("/api/v1/watch/pods", "controller"):                     300,
			`cascade_gateway_log_lines_total{result="malformed"}`:               2,
		},
	}, {
		format: FormatCombined, file: "combined.log", parsed: 6, malformed: 2,
		want: map[string]float64{
			req(leaseRoute, "PUT", "200", "kubelet"):     1,
			req(leaseRoute, "PUT", "504", "kubelet"):     1,
			req(nodeStatus, "PATCH", "200", "kubelet"):   1,
			req("/api/v1/pods", "GET", "200", "kubectl"): 1,
			req(RouteOther, "other", "400", "other"):     2,
			timeouts(leaseRoute, "kubelet"):              1,
			durationCount(nodeStatus, "kubelet"):         0, // no request time on that line
			durationSum(leaseRoute, "kubelet"):           10.005,
			durationSum("/api/v1/pods", "kubectl"):       0.231,
		},
	}} {
		t.Run(string(tc.format), func(t *testing.T) {
			cfg := DefaultConfig()
			path, err := filepath.Abs(filepath.Join("testdata", tc.file))
			require.NoError(t, err)
			spec := LogSpec{Format: tc.format, Path: path}
			cfg.Logs = []LogSpec{spec}
			e, err := New(cfg, discardLogger())
			require.NoError(t, err)
			n, err := e.ReadFile(t.Context(), spec)
			require.NoError(t, err)
			require.Equal(t, uint64(tc.parsed+tc.malformed), n)
			m := scrape(t, exporterCollector{e})
			require.Equal(t, tc.parsed, m[`cascade_gateway_log_lines_total{result="parsed"}`])
			require.Equal(t, tc.malformed, m[`cascade_gateway_log_lines_total{result="malformed"}`])
			require.Equal(t, tc.parsed, sumMetric(m, "cascade_gateway_requests_total"), "every parsed line is one request")
			for k, v := range tc.want {
				require.InDelta(t, v, m[k], 1e-9, "%s", k)
			}
			for k := range m {
				if strings.HasPrefix(k, "cascade_gateway_requests_total{") {
					_, ok := tc.want[k]
					require.True(t, ok, "unexpected series %s", k)
				}
			}
			lintClean(t, e)
		})
	}
}

// TestNginxLogFormatMatchesHarness keeps the documented log_format and the
// one the test harness configures nginx with identical.
func TestNginxLogFormatMatchesHarness(t *testing.T) {
	require.Equal(t, NginxJSONLogFormat, testenv.NginxJSONLogFormat)
}

func TestParseSeconds(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"0.004", 0.004, true},
		{"412.220", 412.22, true},
		{"10", 10, true},
		{"0", 0, true},
		{"1e3", 1000, true},
		{"-", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"1.", 1, true}, // as strconv reads it
		{".5", 0.5, true},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"0.0000000001", 1e-10, true},
	} {
		got, ok := parseSeconds([]byte(tc.in))
		require.Equal(t, tc.ok, ok, "%q", tc.in)
		require.InDelta(t, tc.want, got, 1e-12, "%q", tc.in)
	}
}

func TestClassifyAgent(t *testing.T) {
	for ua, want := range map[string]string{
		"kubelet/v1.37.2 (linux/amd64) kubernetes/abc123": contract.ClientKubelet,
		"kubelet": contract.ClientKubelet,
		"kubectl/v1.37.2 (darwin/arm64) kubernetes/abc123":                                contract.ClientKubectl,
		"kubectl.exe/v1.30.1 (windows/amd64) kubernetes/abc123":                           contract.ClientKubectl,
		"kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/abc123/leader-election": contract.ClientController,
		"kube-scheduler/v1.37.2 (linux/amd64) kubernetes/abc123/scheduler":                contract.ClientController,
		"cloud-controller-manager/v1.30.0":                                                contract.ClientController,
		"argocd-application-controller/v2.14.0":                                           contract.ClientController,
		"PrometheusOperator/0.80.0":                                                       contract.ClientController,
		"cluster-autoscaler/v1.32.0":                                                      contract.ClientController,
		"my-reconciler/0.3.1 (linux/amd64) kubernetes/v0.37.2":                            contract.ClientController,
		"kube-proxy/v1.37.2 (linux/amd64) kubernetes/abc123":                              contract.ClientController,
		"curl/8.5.0": contract.ClientOther,
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0": contract.ClientOther,
		"OpenAPI-Generator/29.0.0/python": contract.ClientOther,
		"Helm/3.16.1":                     contract.ClientOther,
		"":                                contract.ClientOther,
		"-":                               contract.ClientOther,
		"kubeletfake/1.0":                 contract.ClientOther,
		"Go-http-client/1.1":              contract.ClientOther,
	} {
		require.Equal(t, want, classNames[classifyAgent([]byte(ua))], "%q", ua)
	}
}

func TestHasStatus504(t *testing.T) {
	require.True(t, hasStatus504([]byte("504")))
	require.True(t, hasStatus504([]byte("502, 504")))
	require.True(t, hasStatus504([]byte("504 : 200")))
	require.False(t, hasStatus504([]byte("5040")))
	require.False(t, hasStatus504([]byte("200")))
	require.False(t, hasStatus504([]byte("-")))
	require.False(t, hasStatus504(nil))
}

func TestTimeOf(t *testing.T) {
	nt, ok := (&nginxJSONParser{}).timeOf([]byte("1773528481.102"))
	require.True(t, ok)
	require.Equal(t, time.UnixMilli(1773528481102), nt)
	et, ok := (&envoyJSONParser{}).timeOf([]byte("2026-03-14T22:48:01.102Z"))
	require.True(t, ok)
	require.True(t, et.Equal(nt))
	ct, ok := (&combinedParser{}).timeOf([]byte("14/Mar/2026:23:48:01 +0100"))
	require.True(t, ok)
	require.True(t, ct.Equal(nt.Truncate(time.Second)))
	_, ok = (&nginxJSONParser{}).timeOf([]byte("-"))
	require.False(t, ok)
}

// TestTimeoutThreshold counts a slow non-watch request as a timeout, and
// leaves a long watch alone.
func TestTimeoutThreshold(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TimeoutThreshold = 10 * time.Second
	p := newPipeline(FormatNginxJSON, newMetrics(), newRouteTable(10), &cfg, nil)
	line := func(uri, rt string) []byte {
		b, err := json.Marshal(map[string]string{"method": "GET", "uri": uri, "status": "200", "request_time": rt, "user_agent": "kubectl/v1"})
		require.NoError(t, err)
		return b
	}
	p.Line(line("/api/v1/pods", "10.000"))
	p.Line(line("/api/v1/pods", "9.999"))
	p.Line(line("/api/v1/pods?watch=true", "600.000"))
	m := scrape(t, p.m.timeouts)
	require.Equal(t, 1.0, m[timeouts("/api/v1/pods", "kubectl")])
	require.Equal(t, 0.0, m[timeouts("/api/v1/watch/pods", "kubectl")])
}

// TestMaxRoutes folds routes beyond the limit into "other" and counts them.
func TestMaxRoutes(t *testing.T) {
	cfg := DefaultConfig()
	m := newMetrics()
	p := newPipeline(FormatCombined, m, newRouteTable(2), &cfg, nil)
	for _, path := range []string{"/api/v1/pods", "/api/v1/nodes", "/api/v1/services", "/api/v1/services", "/api/v1/pods", "/nope"} {
		p.Line([]byte(`1.2.3.4 - - [14/Mar/2026:23:48:01 +0100] "GET ` + path + ` HTTP/1.1" 200 1 "-" "curl/8"`))
	}
	s := scrape(t, m.requests)
	require.Equal(t, 2.0, s[req("/api/v1/pods", "GET", "200", "other")])
	require.Equal(t, 1.0, s[req("/api/v1/nodes", "GET", "200", "other")])
	require.Equal(t, 3.0, s[req(RouteOther, "GET", "200", "other")], "two over the limit, one outside the grammar")
	require.Equal(t, 2.0, scrape(t, m.routesOver)["cascade_gateway_routes_over_limit_total"])
}

// TestPipelineAllocations guards the hot path: a line of a known series
// allocates nothing.
func TestPipelineAllocations(t *testing.T) {
	cfg := DefaultConfig()
	p := newPipeline(FormatNginxJSON, newMetrics(), newRouteTable(100), &cfg, nil)
	lines := testdataLines(t, "nginx-json.log")
	for _, l := range lines {
		p.Line(l)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, l := range lines {
			p.Line(l)
		}
	})
	require.Zero(t, allocs)
}

func BenchmarkPipelineNginxJSON(b *testing.B) {
	cfg := DefaultConfig()
	p := newPipeline(FormatNginxJSON, newMetrics(), newRouteTable(100), &cfg, nil)
	lines := testdataLines(b, "nginx-json.log")[:10]
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Line(lines[i%len(lines)])
	}
}
