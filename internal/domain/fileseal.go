package domain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// FileSeal is a Seal whose key is a 32-byte file, readable by the owner
// only. It suits development and single-node use; anyone who can read the
// file and the database can read every key.
type FileSeal struct{ box aeadBox }

var _ Seal = (*FileSeal)(nil)

// OpenFileSeal reads the key file at path, creating it with a fresh random
// key when it does not exist. Of processes creating it at once (nodes
// sharing one file), one key wins and all read it.
func OpenFileSeal(path string, rand io.Reader) (*FileSeal, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw = make([]byte, 32)
		if _, err := io.ReadFull(rand, raw); err != nil {
			return nil, fmt.Errorf("domain: generating seal key: %w", err)
		}
		created, err := writeNew(path, raw)
		if err != nil {
			return nil, err
		}
		if !created {
			return OpenFileSeal(path, rand)
		}
	} else if err != nil {
		return nil, fmt.Errorf("domain: reading seal key: %w", err)
	}
	box, err := newBox(raw)
	if err != nil {
		return nil, fmt.Errorf("domain: seal key %s: %w", path, err)
	}
	return &FileSeal{box: box}, nil
}

// writeNew writes data to a new file with mode 0600: to a synced
// temporary file first, then linked to path, so that no reader ever sees
// a partial key. created is false when path appeared meanwhile.
func writeNew(path string, data []byte) (created bool, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".seal-key-")
	if err != nil {
		return false, fmt.Errorf("domain: creating seal key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, fmt.Errorf("domain: creating seal key: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, fmt.Errorf("domain: writing seal key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("domain: writing seal key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("domain: writing seal key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("domain: creating seal key: %w", err)
	}
	return true, nil
}

// Seal implements Seal.
func (s *FileSeal) Seal(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	return s.box.seal(plaintext, aad)
}

// Open implements Seal.
func (s *FileSeal) Open(_ context.Context, sealed, aad []byte) ([]byte, error) {
	return s.box.open(sealed, aad)
}
