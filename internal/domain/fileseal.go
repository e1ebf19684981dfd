package domain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// FileSeal is a Seal whose key is a 32-byte file, readable by the owner
// only. It suits development and single-node use; anyone who can read the
// file and the database can read every key.
type FileSeal struct{ box aeadBox }

var _ Seal = (*FileSeal)(nil)

// OpenFileSeal reads the key file at path, creating it with a fresh random
// key when it does not exist.
func OpenFileSeal(path string, rand io.Reader) (*FileSeal, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw = make([]byte, 32)
		if _, err := io.ReadFull(rand, raw); err != nil {
			return nil, fmt.Errorf("domain: generating seal key: %w", err)
		}
		if err := writeNew(path, raw); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("domain: reading seal key: %w", err)
	}
	box, err := newBox(raw, rand)
	if err != nil {
		return nil, fmt.Errorf("domain: seal key %s: %w", path, err)
	}
	return &FileSeal{box: box}, nil
}

// writeNew writes data to a new file with mode 0600 and syncs it, failing
// if the file appeared meanwhile.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("domain: creating seal key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("domain: writing seal key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("domain: writing seal key: %w", err)
	}
	return f.Close()
}

// Seal implements Seal.
func (s *FileSeal) Seal(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	return s.box.seal(plaintext, aad)
}

// Open implements Seal.
func (s *FileSeal) Open(_ context.Context, sealed, aad []byte) ([]byte, error) {
	return s.box.open(sealed, aad)
}
