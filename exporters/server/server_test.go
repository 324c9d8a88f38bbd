package server

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"
	"github.com/stretchr/testify/require"
)

// parse declares the flags on a fresh application and parses args.
func parse(t *testing.T, args ...string) *Server {
	t.Helper()
	app := kingpin.New("test", "")
	s := AddFlags(app)
	_, err := app.Parse(args)
	require.NoError(t, err)
	return s
}

func TestBuild(t *testing.T) {
	log := filepath.Join(t.TempDir(), "access.log")
	off := []string{"--no-exporter.nodelease", "--no-exporter.apimemory"}
	for _, c := range []struct {
		name      string
		args      []string
		allowNone bool
		want      []string // names of the parts
		err       string
	}{
		{name: "every exporter off", args: off, err: "every exporter is disabled"},
		{name: "every exporter off, allowed", args: off, allowNone: true},
		{name: "gateway", args: append(off, "--exporter.gateway", "--gateway.log=nginx-json:"+log), want: []string{"gateway"}},
		{name: "gateway log without the gateway", args: append(off, "--gateway.log=nginx-json:"+log),
			err: "--gateway.log given but the gateway exporter is off: add --exporter.gateway"},
		{name: "bad gateway log", args: append(off, "--exporter.gateway", "--gateway.log=x"), err: `--gateway.log: log "x"`},
		{name: "bad endpoint", args: []string{"--no-exporter.nodelease", "--no-apimemory.pods", "--apimemory.endpoint=bad"},
			err: `--apimemory.endpoint: endpoint "bad"`},
		{name: "apimemory without a source", args: []string{"--no-exporter.nodelease", "--no-apimemory.pods"},
			err: "(or turn the exporter off with --no-exporter.apimemory)"},
		{name: "the defaults need a cluster", args: []string{"--kubeconfig=/nonexistent"}, err: "/nonexistent"},
		{name: "apimemory from an endpoint needs none", args: []string{"--kubeconfig=/nonexistent", "--no-exporter.nodelease",
			"--no-apimemory.pods", "--apimemory.endpoint=a=https://127.0.0.1:6443"}, want: []string{"apimemory"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			parts, err := parse(t, c.args...).Build(slog.New(slog.DiscardHandler), c.allowNone)
			if c.err != "" {
				require.ErrorContains(t, err, c.err)
				return
			}
			require.NoError(t, err)
			var names []string
			for _, p := range parts {
				names = append(names, p.Name)
				require.NotNil(t, p.Runner, p.Name)
			}
			require.Equal(t, c.want, names)
		})
	}
}

// TestFlagsAreNamed: every exporter has its switch, on or off as its
// factory says, and its own flags under its name; names are unique.
func TestFlagsAreNamed(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range Factories {
		require.False(t, seen[f.Name], "%s registered twice", f.Name)
		seen[f.Name] = true
		app := kingpin.New("test", "")
		s := AddFlags(app)
		_, err := app.Parse(nil)
		require.NoError(t, err)
		for _, e := range s.exporters {
			if e.factory.Name == f.Name {
				require.Equal(t, f.DefaultEnabled, e.enabled, f.Name)
			}
		}
		own := kingpin.New("own", "")
		f.Flags(own)
		for _, flag := range own.Model().Flags {
			if !flag.Hidden && flag.Name != "help" {
				require.True(t, strings.HasPrefix(flag.Name, f.Name+"."), "%s declares --%s", f.Name, flag.Name)
			}
		}
	}
}
