package tail

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/cascade-sre/cascade/internal/atomicfile"
)

// positionsVersion is written into the file; a file of another version is
// refused rather than misread.
const positionsVersion = 1

// Position is where reading of one file stopped. A followed path has one
// for the file now at the path and one for each rotated-away file still
// being read.
type Position struct {
	// Path is the followed path the file belongs to.
	Path string `json:"path"`
	// File is where the file was last seen; for a rotated file the name it
	// was rotated to (access.log.1), found through /proc/self/fd.
	File   string `json:"file,omitempty"`
	Device uint64 `json:"device"`
	Inode  uint64 `json:"inode"`
	// Offset is just after the last line counted.
	Offset int64 `json:"offset"`
	// Window is the hex of up to windowSize bytes just before Offset: if
	// they changed, the file was truncated and rewritten (copytruncate)
	// while nobody watched.
	Window string `json:"window,omitempty"`
	// HeadLen and HeadHash fingerprint the file's first bytes (FNV-1a),
	// for the same purpose.
	HeadLen  int    `json:"head_len,omitempty"`
	HeadHash uint64 `json:"head_hash,omitempty"`
	Rotated  bool   `json:"rotated,omitempty"`
}

// PositionsFile is the positions file's content.
type PositionsFile struct {
	Version int        `json:"version"`
	Files   []Position `json:"files"`
}

// loadPositions reads the positions file; a missing file is no positions.
func loadPositions(path string) (map[string][]Position, error) {
	out := make(map[string][]Position)
	if path == "" {
		return out, nil
	}
	f, _, err := openRegular(path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("positions file: %w", err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("positions file: %w", err)
	}
	var pf PositionsFile
	if err := json.Unmarshal(b, &pf); err != nil {
		return nil, fmt.Errorf("positions file %s: %w (remove it to start over)", path, err)
	}
	if pf.Version != positionsVersion {
		return nil, fmt.Errorf("positions file %s: version %d, want %d (remove it to start over)", path, pf.Version, positionsVersion)
	}
	for _, e := range pf.Files {
		if e.Offset < 0 {
			return nil, fmt.Errorf("positions file %s: negative offset for %s", path, e.Path)
		}
		if _, err := hex.DecodeString(e.Window); err != nil || len(e.Window) > 2*windowSize {
			return nil, fmt.Errorf("positions file %s: bad window for %s", path, e.Path)
		}
		if e.HeadLen < 0 || e.HeadLen > headSize {
			return nil, fmt.Errorf("positions file %s: bad head length for %s", path, e.Path)
		}
		out[e.Path] = append(out[e.Path], e)
	}
	return out, nil
}

// positionStore collects the followers' positions and writes them.
type positionStore struct {
	path    string
	mu      sync.Mutex
	entries map[string][]Position
	dirty   bool
	// writeMu serialises writers of the file.
	writeMu sync.Mutex
}

func newPositionStore(path string, initial map[string][]Position) *positionStore {
	s := &positionStore{path: path, entries: make(map[string][]Position)}
	for p, es := range initial {
		s.entries[p] = es
	}
	return s
}

// set replaces the entries of one configured path.
func (s *positionStore) set(path string, es []Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[path] = es
	s.dirty = true
}

// write saves the positions if they changed, whole or not at all.
func (s *positionStore) write() error {
	if s.path == "" {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	pf := PositionsFile{Version: positionsVersion}
	for _, es := range s.entries {
		pf.Files = append(pf.Files, es...)
	}
	s.dirty = false
	s.mu.Unlock()
	sort.Slice(pf.Files, func(i, j int) bool {
		a, b := pf.Files[i], pf.Files[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return !a.Rotated && b.Rotated
	})
	if pf.Files == nil {
		pf.Files = []Position{}
	}
	b, err := json.MarshalIndent(pf, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.path, append(b, '\n'), 0o600); err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("write positions: %w", err)
	}
	return nil
}
