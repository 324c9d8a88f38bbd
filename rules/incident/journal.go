package incident

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cascade-sre/cascade/internal/atomicfile"
)

// Files in the incident directory.
const (
	journalFile = "events.jsonl"
	stateFile   = "open-incidents.json"
)

// appendJournal appends events to the journal as JSON lines in one write,
// synced. On failure the journal is cut back to its old length, so a retry
// neither repeats nor half-writes a line.
func appendJournal(path string, events []Event) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range events {
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("incident journal: encode %s %s: %w", e.Incident, e.Phase, err)
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("incident journal: %w", err)
	}
	fi, err := f.Stat()
	if err == nil {
		_, err = f.Write(buf.Bytes())
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			_ = f.Truncate(fi.Size())
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("incident journal %s: %w", path, err)
	}
	return nil
}

// saveState writes the open incidents, whole or not at all.
func saveState(path string, open []*state) error {
	b, err := json.MarshalIndent(open, "", "  ")
	if err != nil {
		return fmt.Errorf("incident state: %w", err)
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

// loadState reads the open incidents; a missing file is none. It reads the
// format of older versions too (a map from cluster to incident).
func loadState(path string) ([]*state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("incident state: %w", err)
	}
	var open []*state
	if err := json.Unmarshal(b, &open); err != nil {
		var old map[string]*state
		if json.Unmarshal(b, &old) != nil {
			return nil, fmt.Errorf("incident state: %s is corrupt: %w", path, err)
		}
		for _, s := range old {
			open = append(open, s)
		}
	}
	for _, s := range open {
		if s == nil || s.ID == "" {
			return nil, fmt.Errorf("incident state: %s is corrupt: an incident without an id", path)
		}
		if s.Scope == "" {
			s.Scope = ScopeCluster
		}
	}
	return open, nil
}

// Journal reads every event recorded in dir, oldest first.
func Journal(dir string) ([]Event, error) {
	f, err := os.Open(filepath.Join(dir, journalFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadJournal(f)
}

// maxLine bounds one journal line: a regional incident lists the clusters
// it hit, a few thousand names at most.
const maxLine = 16 << 20

// ReadJournal reads events as JSON lines; a bad line is an error naming it.
func ReadJournal(r io.Reader) ([]Event, error) {
	var out []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("%s line %d: %w", journalFile, line, err)
		}
		e.Normalize()
		out = append(out, e)
	}
	return out, sc.Err()
}
