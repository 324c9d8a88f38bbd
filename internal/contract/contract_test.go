package contract

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// TestREADMEDocumentsTheContract: README.md's "Metrics" table has a row for
// every family of the contract, with its type and labels, and no row for an
// exporter family the contract lacks.
func TestREADMEDocumentsTheContract(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Metrics\n")
	if !ok {
		t.Fatal("README.md has no Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `(cascade_[a-z_]+)` \\| ([a-z]+) \\|([^|]*)\\|")
	documented := map[string][2]string{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		documented[m[1]] = [2]string{m[2], strings.TrimSpace(m[3])}
	}
	names := map[string]bool{}
	for _, m := range All {
		names[m.Name] = true
		doc, ok := documented[m.Name]
		if !ok {
			t.Errorf("%s: no row in README.md's Metrics table", m.Name)
			continue
		}
		var labels []string
		for _, l := range m.Labels {
			labels = append(labels, "`"+l+"`")
		}
		if want := [2]string{string(m.Type), strings.Join(labels, ", ")}; doc != want {
			t.Errorf("%s: README.md says %q, the contract %q", m.Name, doc, want)
		}
	}
	for name := range documented {
		exporterFamily := strings.HasPrefix(name, "cascade_apiserver_") || strings.HasPrefix(name, "cascade_node") ||
			strings.HasPrefix(name, "cascade_gateway_") || strings.HasPrefix(name, "cascade_exporter_scrape_")
		if exporterFamily && !names[name] {
			t.Errorf("%s: in README.md's Metrics table but not in the contract", name)
		}
	}
}

// TestNames: names are unique, follow Prometheus's conventions (promlint),
// and the signals are part of the contract.
func TestNames(t *testing.T) {
	seen := map[string]bool{}
	var families []*dto.MetricFamily
	for _, m := range All {
		if seen[m.Name] {
			t.Errorf("%s defined twice", m.Name)
		}
		seen[m.Name] = true
		typ := map[Type]dto.MetricType{Gauge: dto.MetricType_GAUGE, Counter: dto.MetricType_COUNTER, Histogram: dto.MetricType_HISTOGRAM}[m.Type]
		families = append(families, &dto.MetricFamily{Name: &m.Name, Help: &m.Help, Type: &typ})
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	for _, m := range Signals {
		if !slices.ContainsFunc(All, func(a Metric) bool { return a.Name == m.Name }) {
			t.Errorf("signal %s is not in All", m.Name)
		}
	}
}
