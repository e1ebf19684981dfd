package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// nodeNameFile keeps the node's name in its data directory.
const nodeNameFile = "node-name"

// validNodeName is what a node may be called: it goes into audit records,
// cursor names and logs.
var validNodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// nodeName returns the node's name: the one given (which must be valid),
// else the one kept in dir, else a new one made from the host name and a
// random suffix (two nodes may share a host name) and kept in dir.
func nodeName(dir, given string) (string, error) {
	if given != "" {
		if !validNodeName.MatchString(given) {
			return "", fmt.Errorf("server: node name %q: use up to 63 letters, digits, '.', '_' and '-'", given)
		}
		return given, nil
	}
	path := filepath.Join(dir, nodeNameFile)
	b, err := os.ReadFile(path)
	if err == nil {
		name := strings.TrimSpace(string(b))
		if !validNodeName.MatchString(name) {
			return "", fmt.Errorf("server: %s holds no valid node name", path)
		}
		return name, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("server: reading the node name: %w", err)
	}
	host, _ := os.Hostname()
	host = regexp.MustCompile(`[^A-Za-z0-9._-]+`).ReplaceAllString(host, "")
	host = strings.TrimLeft(host, "._-")
	if len(host) > 40 {
		host = host[:40]
	}
	if host == "" {
		host = "node"
	}
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return "", err
	}
	name := host + "-" + hex.EncodeToString(suffix)
	if err := writeFileAtomic(path, []byte(name+"\n"), 0o644); err != nil {
		return "", err
	}
	return name, nil
}

// journalIDFile names, in the audit journal's directory, the journal's
// identity: what its delivery cursors are kept under in a shared store.
const journalIDFile = "journal-id"

// loadOrCreateJournalID returns the journal's identity, making it on
// first start: random for a new journal, "" for one that has records
// already (begun before journals had identities: its cursors are kept
// under the settings' bare names, and it goes on using them).
func loadOrCreateJournalID(dir string) (string, error) {
	path := filepath.Join(dir, journalIDFile)
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("server: reading the journal id: %w", err)
	}
	id := ""
	if old, _ := filepath.Glob(filepath.Join(dir, "*.jsonl")); len(old) == 0 {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		id = hex.EncodeToString(b)
	}
	if err := writeFileAtomic(path, []byte(id+"\n"), 0o600); err != nil {
		return "", err
	}
	return id, nil
}
