package main

import (
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/runconfig"
)

// TestREADMEDocumentsEveryFlag keeps the README's flag tables honest: a flag
// added to a command without a line in the README fails here.
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	model := newCLI().app.Model()
	var missing []string
	for _, f := range model.Flags {
		if !f.Hidden && f.Name != "help" && !strings.Contains(string(readme), "`--"+f.Name+"`") {
			missing = append(missing, "--"+f.Name)
		}
	}
	// Every command, subcommands (rules check, dashboards build…) included.
	cmds := model.Commands
	for len(cmds) > 0 {
		cmd := cmds[0]
		cmds = append(cmds[1:], cmd.Commands...)
		for _, f := range cmd.Flags {
			if f.Hidden || f.Name == "help" {
				continue
			}
			if !strings.Contains(string(readme), "`--"+f.Name+"`") {
				missing = append(missing, cmd.FullCommand+" --"+f.Name)
			}
		}
	}
	require.Empty(t, missing, "flags missing from README.md")
}

// TestREADMEConfigurationLoads: the README's example configuration of
// cascade run is one cascade run accepts.
func TestREADMEConfigurationLoads(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, after, ok := strings.Cut(string(readme), "\n    global:\n")
	require.True(t, ok, "no example configuration in README.md")
	example := "global:\n"
	for _, line := range strings.Split(after, "\n") {
		if !strings.HasPrefix(line, "    ") {
			break
		}
		example += strings.TrimPrefix(line, "    ") + "\n"
	}
	require.Contains(t, example, "cascade:")
	require.Contains(t, example, "tracing:")
	_, err = runconfig.Parse([]byte(example), t.TempDir(), slog.New(slog.DiscardHandler))
	require.NoError(t, err, "%s", example)
}

// TestREADMELayoutNamesEveryPackage: the README's layout table names every
// top-level folder that holds Go code and every package under internal/.
func TestREADMELayoutNamesEveryPackage(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, layout, ok := strings.Cut(string(readme), "\n## Layout\n")
	require.True(t, ok, "no Layout section in README.md")
	layout, _, _ = strings.Cut(layout, "\n## ")
	var missing []string
	err = filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "../.." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		parts := strings.Split(filepath.ToSlash(filepath.Dir(strings.TrimPrefix(path, "../../"))), "/")
		name := "`" + parts[0] + "/"
		if parts[0] == "internal" && len(parts) > 1 {
			name = "`internal/" + parts[1] + "`"
		}
		if !strings.Contains(layout, name) && !slices.Contains(missing, name) {
			missing = append(missing, name)
		}
		return nil
	})
	require.NoError(t, err)
	require.Empty(t, missing, "folders missing from README.md's Layout table")
}
