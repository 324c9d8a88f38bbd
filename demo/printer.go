package demo

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cascade-sre/cascade/rules"
	"github.com/cascade-sre/cascade/rules/backtest"
	"github.com/cascade-sre/cascade/rules/incident"
	"github.com/cascade-sre/cascade/scenario"
)

// printer prints the incident as it unfolds: events on out, progress on
// status. On a terminal (both go to the same screen) the progress is one
// line redrawn in place, cut to the terminal's width; an event clears it,
// takes its place, and the progress is drawn again below. What happens to
// many clusters at one evaluation (an alert firing in each, clusters hit)
// is one line naming them.
type printer struct {
	out         io.Writer
	status      io.Writer
	width       int    // of the terminal; 0: not a terminal
	bar         string // the progress line on the screen now, if any
	loc         *time.Location
	truth       scenario.Truth
	faultsShown int
	firing      map[string]bool // alerts firing, by name and labels
	incident    string          // phase of the open incident
	lastTenth   int             // of the progress written without a terminal
	pending     []line          // this evaluation's lines, merged when printed
}

// line is one printed event; lines of one time, kind and text merge into
// one naming everything they are about.
type line struct {
	at         time.Time
	kind, text string
	about      string // a cluster, or a replica
	suffix     string
}

func newPrinter(out, status io.Writer, width int, loc *time.Location, truth scenario.Truth) *printer {
	return &printer{out: out, status: status, width: width, loc: loc, truth: truth, firing: map[string]bool{}}
}

// clearLine is a carriage return and ANSI "erase the whole line".
const clearLine = "\r\x1b[2K"

func (p *printer) print(t time.Time, kind, text string) {
	if p.bar != "" {
		fmt.Fprint(p.status, clearLine)
	}
	fmt.Fprintf(p.out, "%s  %-9s %s\n", t.In(p.loc).Format("15:04:05"), kind, text)
	if p.bar != "" {
		fmt.Fprint(p.status, p.bar)
	}
}

// maxNamed is how many names a merged line shows.
const maxNamed = 4

// flush prints this evaluation's lines, merged.
func (p *printer) flush() {
	for len(p.pending) > 0 {
		first := p.pending[0]
		var about []string
		rest := p.pending[:0]
		for _, l := range p.pending {
			if l.at.Equal(first.at) && l.kind == first.kind && l.text == first.text && l.suffix == first.suffix {
				if l.about != "" {
					about = append(about, l.about)
				}
				continue
			}
			rest = append(rest, l)
		}
		slices.Sort(about)
		// As many names as fit: a terminal's line must not wrap.
		var text string
		for k := min(len(about), maxNamed); k >= 0; k-- {
			text = merged(first, about, k)
			if p.width == 0 || prefixWidth+len([]rune(text)) < p.width {
				break
			}
		}
		if r := []rune(text); p.width > 0 && prefixWidth+len(r) >= p.width {
			text = string(r[:max(p.width-prefixWidth-2, 0)]) + "…"
		}
		p.print(first.at, first.kind, text)
		p.pending = rest
	}
}

// prefixWidth is the width of a printed line's time and kind.
const prefixWidth = len("15:04:05  ") + 10

// merged is l's text naming k of what it is about (all, when one).
func merged(l line, about []string, k int) string {
	text := l.text
	switch {
	case len(about) == 1:
		text += " (" + about[0] + ")"
	case len(about) > 1 && k == 0:
		text += fmt.Sprintf(" in %d", len(about))
	case len(about) > 1:
		text += fmt.Sprintf(" in %d: %s", len(about), strings.Join(about[:k], ", "))
		if len(about) > k {
			text += fmt.Sprintf(" and %d more", len(about)-k)
		}
	}
	return text + l.suffix
}

// faultsUntil prints the injected faults up to t, from the ground truth:
// the demo knows what it injected, Cascade does not.
func (p *printer) faultsUntil(t time.Time) {
	for p.faultsShown < len(p.truth.Events) && !p.truth.Events[p.faultsShown].Time.After(t) {
		e := p.truth.Events[p.faultsShown]
		text := e.Name
		if e.Detail != "" {
			text += ": " + e.Detail
		}
		p.print(e.Time, "injected", text)
		p.faultsShown++
	}
}

func (p *printer) transition(t backtest.Transition) {
	p.faultsUntil(t.Time)
	if t.Kind == backtest.KindIncident {
		p.incidentEvent(t.Event)
		return
	}
	key := t.Name + fmt.Sprint(t.Labels)
	switch t.State {
	case "firing":
		p.firing[key] = true
	case "inactive":
		if !p.firing[key] {
			return // pending that never fired: nobody hears of it
		}
		delete(p.firing, key)
	default:
		return
	}
	if t.Name == rules.IncidentAlert {
		return // told as the incident
	}
	l := line{at: t.Time, kind: "alert", text: t.Name + " " + t.State, about: about(t.Labels)}
	switch {
	case t.Labels[rules.SymptomLabel] == "true" && p.incident != "" && t.State == "firing":
		l.suffix = "  (inhibited in Alertmanager: part of the incident)"
	case t.Labels[rules.GuardLabel] == "true" && t.State == "firing":
		l.suffix = "  → automation: stop auto-healing nodes"
	}
	p.pending = append(p.pending, l)
}

func (p *printer) incidentEvent(e *incident.Event) {
	switch e.Phase {
	case incident.ClusterHit:
		p.pending = append(p.pending, line{at: e.Time, kind: "INCIDENT", text: "cluster hit", about: e.Cluster})
		return
	case incident.ClusterRecovered:
		p.pending = append(p.pending, line{at: e.Time, kind: "INCIDENT", text: "cluster recovered", about: e.Cluster})
		return
	case incident.Resolved:
		p.incident = ""
	default:
		p.incident = string(e.Phase)
	}
	text := fmt.Sprintf("%s %s, root cause %s", strings.ToUpper(string(e.Phase)), rules.IncidentAlert, e.RootCause)
	if e.Scope == incident.ScopeRegion {
		text = fmt.Sprintf("%s regional %s in %s, root cause %s", strings.ToUpper(string(e.Phase)), rules.IncidentAlert, e.Region, e.RootCause)
		if e.Shared != "" {
			text += " of shared " + e.Shared
		}
		if e.Phase == incident.Escalation {
			text += fmt.Sprintf(", %d of %d clusters hit", len(e.ClustersHit), e.ClustersTotal)
		}
	}
	if e.Phase == incident.Escalation {
		text += "  → PAGE"
	}
	p.pending = append(p.pending, line{at: e.Time, kind: "INCIDENT", text: text})
}

// about names what an alert is about beyond the region: its cluster or
// shared component, and its replica.
func about(l map[string]string) string {
	var parts []string
	for _, k := range []string{"cluster", "shared", "replica"} {
		if v := l[k]; v != "" {
			parts = append(parts, v)
		}
	}
	// A shared component's replica names it already: regional-api-0.
	if s, r := l["shared"], l["replica"]; s != "" && strings.HasPrefix(r, s) {
		parts = slices.DeleteFunc(parts, func(p string) bool { return p == s })
	}
	return strings.Join(parts, " ")
}

// progress redraws the progress line on a terminal; elsewhere (a log, a
// pipe) it writes one line at every tenth of the way.
func (p *printer) progress(pr backtest.Progress) {
	percent := 100 * pr.Step / pr.Steps
	if p.width == 0 && (percent/10 == p.lastTenth || percent%10 != 0) {
		return
	}
	p.lastTenth = percent / 10
	const width = 30
	done := width * pr.Step / pr.Steps
	state := "no incident"
	if p.incident != "" {
		state = "incident: " + p.incident
	}
	text := fmt.Sprintf("[%s%s] %s  %3d%%  %d alerts firing, %s", strings.Repeat("#", done), strings.Repeat(".", width-done),
		pr.Time.In(p.loc).Format("15:04:05"), percent, len(p.firing), state)
	if p.width == 0 {
		fmt.Fprintln(p.status, text)
		return
	}
	// One column short of the width: a line that fills the last column
	// wraps on some terminals, and \r would then go back to the wrong line.
	if r := []rune(text); len(r) >= p.width {
		text = string(r[:max(p.width-1, 0)])
	}
	p.bar = text
	fmt.Fprint(p.status, clearLine+text)
}

// endProgress ends the progress line on a terminal, so what follows starts
// on a line of its own.
func (p *printer) endProgress() {
	if p.bar != "" {
		fmt.Fprintln(p.status)
		p.bar = ""
	}
}
