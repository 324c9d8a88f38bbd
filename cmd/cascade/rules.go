package main

import (
	"fmt"
	"io"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/cascade-sre/cascade/rules"
	"github.com/cascade-sre/cascade/rules/engine"
	"github.com/cascade-sre/cascade/rules/routing"
	"github.com/cascade-sre/cascade/rules/ruletest"
)

// rulesCommand is `cascade rules`: check rule files, print the Alertmanager
// routing that goes with them.
type rulesCommand struct {
	check      *kingpin.CmdClause
	checkFiles []string

	test      *kingpin.CmdClause
	testFiles []string

	amConfig *kingpin.CmdClause
	routing  routing.Options
}

func addRulesCommand(app *kingpin.Application) *rulesCommand {
	c := &rulesCommand{routing: routing.DefaultOptions()}
	cmd := app.Command("rules", "Work with Cascade's rule files.")

	c.check = cmd.Command("check", "Check rule files as promtool check rules does; without files, the embedded ones.")
	c.check.Arg("files", "Rule files to check.").StringsVar(&c.checkFiles)

	c.test = cmd.Command("test", "Run rule unit tests in promtool's format (rule_files may name embedded:FILE for the built-in rules).")
	c.test.Arg("files", "Test files.").Required().StringsVar(&c.testFiles)

	c.amConfig = cmd.Command("alertmanager-config", "Print the Alertmanager routing for Cascade's alerts: the incident to the pager, grouped by cluster; symptoms inhibited while it fires for the same cluster; the auto-heal guard to the automation.")
	c.amConfig.Flag("receiver.page-url", "Webhook of the paging receiver (replace it with your pager's receiver after pasting if you like).").Default(c.routing.PageURL).StringVar(&c.routing.PageURL)
	c.amConfig.Flag("receiver.ticket-url", "Webhook for symptom alerts that fire without an incident.").Default(c.routing.TicketURL).StringVar(&c.routing.TicketURL)
	c.amConfig.Flag("receiver.automation-url", "Webhook of the automation that must stop auto-healing while the guard fires.").Default(c.routing.AutomationURL).StringVar(&c.routing.AutomationURL)
	c.amConfig.Flag("page.group-wait", "How long Alertmanager waits before the first page of an incident.").Default(c.routing.GroupWait.String()).DurationVar(&c.routing.GroupWait)
	c.amConfig.Flag("page.repeat-interval", "How often the page repeats while the incident fires.").Default(c.routing.RepeatInterval.String()).DurationVar(&c.routing.RepeatInterval)
	return c
}

// dispatch runs the rules subcommand named cmd; ok is false if cmd is not one.
func (c *rulesCommand) dispatch(cmd string, stdout, stderr io.Writer) (code int, ok bool) {
	switch cmd {
	case c.check.FullCommand():
		return c.runCheck(stdout, stderr), true
	case c.test.FullCommand():
		failed, err := ruletest.RunFiles(stdout, rules.Files(), c.testFiles...)
		if err != nil {
			fmt.Fprintf(stderr, "cascade: %v\n", err)
			return 1, true
		}
		if failed {
			return 1, true
		}
		return 0, true
	case c.amConfig.FullCommand():
		b, err := routing.AlertmanagerConfig(c.routing)
		if err != nil {
			fmt.Fprintf(stderr, "cascade: %v\n", err)
			return 1, true
		}
		_, _ = stdout.Write(b)
		return 0, true
	}
	return 0, false
}

func (c *rulesCommand) runCheck(stdout, stderr io.Writer) int {
	files := c.checkFiles
	if len(files) == 0 {
		files, _ = engine.RuleFiles(rules.Files()) // the embedded files: no pattern to fail
	}
	failed := false
	for _, f := range files {
		start := time.Now()
		if err := engine.CheckRules(rules.Files(), f); err != nil {
			fmt.Fprintf(stderr, "FAILED %s:\n%v\n", f, err)
			failed = true
			continue
		}
		fmt.Fprintf(stdout, "SUCCESS %s (%s)\n", f, time.Since(start).Round(time.Millisecond))
	}
	if failed {
		return 1
	}
	return 0
}
