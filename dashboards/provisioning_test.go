package dashboards

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The provisioning files are what Grafana's file provisioning reads: a
// file provider for the dashboards, and one data source of each type the
// dashboards' data source variables ask for.
func TestProvisioningFiles(t *testing.T) {
	var dash struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Type, Folder string
			Options            struct{ Path string }
		}
	}
	readYAML(t, "dashboards.yaml", &dash)
	require.Equal(t, 1, dash.APIVersion)
	require.Len(t, dash.Providers, 1)
	p := dash.Providers[0]
	require.Equal(t, "file", p.Type)
	require.NotEmpty(t, p.Name)
	require.True(t, filepath.IsAbs(p.Options.Path), "Grafana needs an absolute path: %q", p.Options.Path)

	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct{ Name, Type, UID, URL string }
	}
	readYAML(t, "datasources.yaml", &ds)
	require.Equal(t, 1, ds.APIVersion)
	provided := map[string]bool{}
	for _, d := range ds.Datasources {
		require.NotEmpty(t, d.URL, d.Name)
		provided[d.Type] = true
	}

	// Every data source variable of every committed dashboard finds one.
	for name, b := range committed(t) {
		var d struct {
			Templating struct {
				List []struct{ Name, Type, Query string }
			}
		}
		require.NoError(t, json.Unmarshal(b, &d), name)
		vars := 0
		for _, v := range d.Templating.List {
			if v.Type == "datasource" {
				vars++
				require.True(t, provided[v.Query], "%s: variable %s wants a %s data source, none provisioned", name, v.Name, v.Query)
			}
		}
		require.Positive(t, vars, "%s has no data source variable", name)
	}
}

func readYAML(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("provisioning", name))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, v), name)
}
