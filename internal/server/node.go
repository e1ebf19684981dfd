package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/store"
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

// A node of a cluster claims its name and its journal in the store, and
// renews the claim every nodeClaimEvery: a second live node with the same
// name (a reused --node-name) or the same journal (a copied data
// directory) would mix two nodes' audit chains and delivery cursors, and
// fail each other's jobs at restart. It is refused at start.
const (
	kindNodeName    = "node-name"
	kindNodeJournal = "node-journal"
	nodeClaimEvery  = 10 * time.Second
	nodeClaimLive   = 3 * nodeClaimEvery
)

// nodeClaim is a claim's record.
type nodeClaim struct {
	Name    string    `json:"name"`
	Journal string    `json:"journal"`
	Seen    time.Time `json:"seen"`
}

// claimNode claims (or renews) this node's name and journal, refusing
// when another live node holds either.
func (s *Server) claimNode(ctx context.Context) error {
	mine := nodeClaim{Name: s.cfg.NodeName, Journal: s.journalID, Seen: time.Now().UTC()}
	data, err := json.Marshal(mine)
	if err != nil {
		return err
	}
	return s.store.Update(ctx, func(tx store.Tx) error {
		keys := [][2]string{{kindNodeName, mine.Name}}
		if mine.Journal != "" {
			keys = append(keys, [2]string{kindNodeJournal, mine.Journal})
		}
		for _, k := range keys {
			o, err := tx.GetObject(ctx, k[0], k[1])
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			var held nodeClaim
			if json.Unmarshal(o.Data, &held) == nil && (held.Name != mine.Name || held.Journal != mine.Journal) &&
				mine.Seen.Sub(held.Seen) < nodeClaimLive {
				return fmt.Errorf("server: another live node (%s, journal %s, seen %s) already runs as %s %q: "+
					"give each node its own --node-name and its own data directory", held.Name, held.Journal,
					held.Seen.Format(time.RFC3339), strings.TrimPrefix(k[0], "node-"), k[1])
			}
		}
		for _, k := range keys {
			if err := tx.PutObject(ctx, &store.Object{Kind: k[0], ID: k[1], Data: data}); err != nil {
				return err
			}
		}
		return nil
	})
}

// releaseNodeClaim gives the name and journal up at shutdown, so that a
// node restarted at once on a fresh data directory under the same name
// (a container's) is not taken for a second live node.
func (s *Server) releaseNodeClaim() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	released, err := json.Marshal(nodeClaim{Name: s.cfg.NodeName, Journal: s.journalID})
	if err != nil {
		return err
	}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		for _, k := range [][2]string{{kindNodeName, s.cfg.NodeName}, {kindNodeJournal, s.journalID}} {
			o, err := tx.GetObject(ctx, k[0], k[1])
			if err != nil {
				continue // none, or not ours to tell
			}
			var held nodeClaim
			if json.Unmarshal(o.Data, &held) == nil && held.Name == s.cfg.NodeName && held.Journal == s.journalID {
				if err := tx.PutObject(ctx, &store.Object{Kind: k[0], ID: k[1], Data: released}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("releasing this node's claim to its name", "err", err)
	}
	return nil
}

// renewNodeClaim renews the claim until ctx ends.
func (s *Server) renewNodeClaim(ctx context.Context) {
	t := time.NewTicker(nodeClaimEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.claimNode(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("renewing this node's claim to its name", "err", err)
			}
		}
	}
}
