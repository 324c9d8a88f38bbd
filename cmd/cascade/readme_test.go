package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
