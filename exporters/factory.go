package exporters

import (
	"fmt"
	"log/slog"

	"github.com/alecthomas/kingpin/v2"
	"k8s.io/client-go/kubernetes"
)

// Factory is one kind of exporter, as its package registers it: its name,
// whether it runs unless told otherwise, and its flags. The list of them
// all is exporters/server's; adding an exporter is a package with a
// Factory and one line there.
type Factory struct {
	// Name names the exporter: its switch --exporter.NAME, the prefix of
	// its own flags (NAME.*), the exporter label of cascade_exporter_*, and
	// its logs.
	Name string
	// Help is the help of --exporter.NAME.
	Help string
	// DefaultEnabled turns the exporter on unless --no-exporter.NAME.
	DefaultEnabled bool
	// Flags declares the exporter's own flags on app and returns its
	// configuration, which reads them once they are parsed.
	Flags func(app FlagSet) Config
}

// FlagSet is where flags are declared: a kingpin application or command.
type FlagSet interface {
	Flag(name, help string) *kingpin.FlagClause
}

// Config is one exporter's configuration, read from its parsed flags.
type Config interface {
	// New checks the configuration (the package's Config.Validate) and
	// builds the exporter; its errors name the flag at fault.
	New(Deps) (Collector, error)
}

// OffChecker is implemented by a Config with flags that make no sense
// while its exporter is off: CheckOff says so, rather than ignoring them.
type OffChecker interface {
	CheckOff() error
}

// Deps is what the exporters of one process share.
type Deps struct {
	// Logger is the exporter's own, named by its exporter attribute.
	Logger *slog.Logger
	// Kube returns the Kubernetes client of the process, made at the first
	// call: a process whose exporters do not call it needs no cluster.
	Kube func() (kubernetes.Interface, error)
}

// ParseEach parses every value of the repeatable flag --name; the error of
// a bad one names the flag.
func ParseEach[T any](name string, values []string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, v := range values {
		t, err := parse(v)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", name, err)
		}
		out = append(out, t)
	}
	return out, nil
}
