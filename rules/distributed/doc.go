// Package distributed holds the tests that run Cascade's rule files, as
// they are, in the rulers of distributed engines: the Thanos Ruler and
// vmalert load them, and vmalert replaying a scenario over VictoriaMetrics
// finds the alerts `cascade backtest` finds, at the same evaluations.
package distributed
