package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExporterBinaryLinksOnlyTheExporters: what runs beside every cluster
// links the exporters and what they need, not the engine (Prometheus's
// TSDB, scrape and rule packages), the dashboards or the tooling, nor any
// Kubernetes API group it does not read, nor what a package initialiser
// would pull in for one small use: client-go's generic typed clients
// (gentype: fake clients, server-side apply, OpenAPI) and Loki's push
// package (gRPC, gogo/protobuf). Each of those adds resident pages of the
// executable: the whole of cascade was 101 MB and held 59 MiB of it in
// memory, the exporter alone 41 MB, 33 MB without those two.
func TestExporterBinaryLinksOnlyTheExporters(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "cascade_exporter", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/cascade-sre/cascade/exporters/nodelease")
	require.Contains(t, deps, "github.com/cascade-sre/cascade/exporters/apimemory")
	require.Contains(t, deps, "github.com/cascade-sre/cascade/exporters/gateway")
	allowedAPIGroups := map[string]bool{"k8s.io/api/core/v1": true, "k8s.io/api/coordination/v1": true}
	for _, dep := range deps {
		switch {
		case strings.HasPrefix(dep, "k8s.io/api/"):
			require.True(t, allowedAPIGroups[dep], "links the API group %s", dep)
		case dep == "k8s.io/client-go/kubernetes", strings.HasPrefix(dep, "k8s.io/client-go/kubernetes/"):
			require.Fail(t, "links client-go's clientset, which registers every API group", dep)
		case dep == "k8s.io/client-go/gentype", strings.HasPrefix(dep, "google.golang.org/grpc"),
			strings.HasPrefix(dep, "github.com/gogo/protobuf/"), strings.HasPrefix(dep, "github.com/grafana/"):
			require.Fail(t, "links a package the exporter uses for one small thing, with large initialisers", dep)
		case strings.HasPrefix(dep, "github.com/prometheus/prometheus/"):
			require.Fail(t, "links a package of the engine", dep)
		case strings.HasPrefix(dep, "github.com/cascade-sre/cascade/"):
			for _, part := range []string{"/collector", "/rules", "/dashboards", "/scenario", "/demo"} {
				require.NotContains(t, dep, "github.com/cascade-sre/cascade"+part, "links %s", dep)
			}
		}
	}
}

// TestExporterBinaryVersion: cascade-exporter names itself and, like
// cascade, prints its version.
func TestExporterBinaryVersion(t *testing.T) {
	out, err := exec.Command(exporterBinary(t), "version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "cascade-exporter, version")
	out, err = exec.Command(exporterBinary(t), "--help").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "exporter*", "exporter is the default command")
	require.NotContains(t, string(out), "dashboards")
}
