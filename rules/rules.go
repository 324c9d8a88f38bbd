// Package rules holds Cascade's Prometheus rule files: the recording rules
// that turn the metric contract into per-cluster signals, the
// ControlPlaneCascadeIncident alert with its root cause, the symptom alerts,
// the early warning and the auto-heal guard.
//
// The files are plain Prometheus rule files (rules/*.yml), embedded in the
// binary so the engine runs them with no file on disk; the same files load
// unchanged into Prometheus (2.42 and later) and the rulers of Mimir, Thanos
// and VictoriaMetrics. Their design, every recording rule and every
// threshold are described in rules/README.md; their unit tests, in
// promtool's format, are in rules/tests.
package rules

import (
	"embed"
	"io/fs"
)

//go:embed *.yml
var files embed.FS

// Files returns the embedded rule files, one Prometheus rule file per
// *.yml entry at the root of the returned file system.
func Files() fs.FS { return files }

// FileNames returns the names of the embedded rule files, sorted, as paths
// in Files.
func FileNames() []string {
	names, err := fs.Glob(files, "*.yml")
	if err != nil {
		// Only a malformed pattern makes Glob fail, and this one is constant.
		panic(err)
	}
	return names
}
