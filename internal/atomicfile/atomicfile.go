// Package atomicfile is the one way Cascade writes an output file: whole or
// not at all. A regular file (or a path that does not exist yet) is written
// to a temporary file beside it, synced, renamed into place, and its
// directory synced, so a crash or a full disk leaves the old file or the new
// one, never half of either. Anything else (a FIFO, /dev/stdout, a terminal,
// /dev/null) is written through, never replaced: renaming over a special
// file would delete it, and as root that file may be the machine's /dev/null.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Write writes path with what write produces. A regular file is replaced
// atomically with mode perm; a special file is opened for writing and
// written through. write's error is returned, and then path is unchanged
// when it is a regular file.
func Write(path string, perm os.FileMode, write func(io.Writer) error) error {
	target, special, err := resolve(path)
	if err != nil {
		return err
	}
	if special {
		return writeThrough(target, write)
	}
	return replace(target, perm, write)
}

// WriteFile is Write with the bytes to write.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// resolve follows symbolic links (so a link to a regular file is kept and
// its target replaced) and says whether what path names is a special file.
// A path that does not exist yet is a regular file to be.
func resolve(path string) (target string, special bool, err error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return path, false, nil
	case err != nil:
		return "", false, fmt.Errorf("write %s: %w", path, err)
	case fi.IsDir():
		return "", false, fmt.Errorf("write %s: is a directory", path)
	case !fi.Mode().IsRegular():
		return path, true, nil
	}
	target, err = filepath.EvalSymlinks(path)
	if err != nil {
		return "", false, fmt.Errorf("write %s: %w", path, err)
	}
	return target, false, nil
}

func writeThrough(path string, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func replace(path string, perm os.FileMode, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	err = write(f)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) {
		err = nil // a file system that cannot sync directories
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
