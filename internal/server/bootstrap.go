package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/armrbac"
	"github.com/keyward/keyward/internal/controlplane"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/store"
)

// Bootstrap is the content of <data-dir>/bootstrap.json: how to reach the
// server as its first administrator. The file is written once, mode 0600,
// and holds the only copy of the client secret.
type Bootstrap struct {
	TenantID      string `json:"tenantId"`
	AuthorityHost string `json:"authorityHost"`
	ClientID      string `json:"clientId"`
	ClientSecret  string `json:"clientSecret"`
	HSMName       string `json:"hsmName"`
	HSMURI        string `json:"hsmUri"`
	ManagementURI string `json:"managementUri"`
	CAFile        string `json:"caFile"`
}

// BootstrapFile is the name of the bootstrap file in the data dir.
const BootstrapFile = "bootstrap.json"

// bootstrap creates the first administrator (and, in dev mode, the dev
// HSM) on first start and writes bootstrap.json; later starts read it.
func (s *Server) bootstrap(ctx context.Context, tenant string) (*Bootstrap, error) {
	path := filepath.Join(s.cfg.DataDir, BootstrapFile)
	var b Bootstrap
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &b); err != nil {
			return nil, fmt.Errorf("server: reading %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		if err := s.createAdmin(ctx, tenant, &b); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("server: reading %s: %w", path, err)
	}
	if err := s.seedControlPlane(ctx, b.ClientID); err != nil {
		return nil, err
	}
	if s.cfg.Dev {
		if err := s.ensureDevHSM(ctx, &b); err != nil {
			return nil, err
		}
	}
	b.TenantID, b.AuthorityHost, b.ManagementURI, b.CAFile = tenant, s.urls.authority, s.urls.management, s.CAFile()
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, append(out, '\n'), 0o600); err != nil {
		return nil, err
	}
	return &b, nil
}

func (s *Server) createAdmin(ctx context.Context, tenant string, b *Bootstrap) error {
	// A principal recorded in the node settings survives a crash between
	// its creation and the writing of bootstrap.json; its secret does not,
	// so a new one is added then.
	var node *store.NodeSettings
	err := s.store.View(ctx, func(tx store.Tx) (err error) { node, err = tx.GetNode(ctx); return err })
	var p *identity.Principal
	switch {
	case err != nil:
		return err
	case node.BootstrapAdmin == "":
		p, err = s.dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "keyward-bootstrap-admin", identity.GlobalAdministrator)
		if err != nil {
			return err
		}
		// Of nodes starting together on an empty database, the first to
		// record its administrator wins; the others drop theirs and join.
		winner := p.ID
		if err := s.updateNode(ctx, func(n *store.NodeSettings) {
			if n.BootstrapAdmin == "" {
				n.BootstrapAdmin = p.ID
			}
			winner = n.BootstrapAdmin
		}); err != nil {
			return err
		}
		if winner != p.ID {
			if err := s.dir.Delete(ctx, p.ID); err != nil {
				return err
			}
			if p, err = s.dir.Get(ctx, winner); err != nil {
				return fmt.Errorf("server: bootstrap administrator %s: %w", winner, err)
			}
		}
	default:
		if p, err = s.dir.Get(ctx, node.BootstrapAdmin); err != nil {
			return fmt.Errorf("server: bootstrap administrator %s: %w", node.BootstrapAdmin, err)
		}
	}
	// One secret per node name: a node started again on a fresh data
	// directory (a container's) replaces its earlier secret rather than
	// add one per start, which would leave live administrator secrets
	// behind and, at MaxSecrets, stop nodes from starting.
	secret, _, err := s.dir.ReplaceSecretFor(ctx, p.ID, "bootstrap:"+s.cfg.NodeName, 365*24*time.Hour)
	if err != nil {
		return err
	}
	b.ClientID, b.ClientSecret = p.AppID, secret
	return nil
}

// ensureDevHSM creates the dev HSM on first start. Its administrator is
// the bootstrap principal, which also holds Crypto Officer and Crypto
// User there, so the quick start can create and use keys at once.
func (s *Server) ensureDevHSM(ctx context.Context, b *Bootstrap) error {
	b.HSMName, b.HSMURI = DevHSMName, strings.TrimSuffix(s.base, "/")
	if s.cfg.AzureNames {
		b.HSMURI = s.HSMURI(DevHSMName)
	}
	admin, err := s.dir.GetByAppID(ctx, b.ClientID)
	if err != nil {
		return fmt.Errorf("server: bootstrap administrator: %w", err)
	}
	extra := map[string][]string{admin.ID: {rbac.CryptoOfficerID, rbac.CryptoUserID}}
	h, err := s.registry.Get(ctx, DevHSMName)
	if errors.Is(err, domain.ErrHSMNotFound) { // the HSM and its roles in one transaction
		err = s.store.Update(ctx, func(tx store.Tx) error {
			h, err := s.registry.CreateTx(ctx, tx, domain.CreateParams{Name: DevHSMName, Admins: []string{admin.ID}, Activated: true,
				ResourceGroup: DefaultResourceGroup, Location: "local"})
			if err != nil {
				return err
			}
			return s.rbac.SeedInitialRolesTx(ctx, tx, h, extra)
		})
		if fault.KindOf(err) != fault.Conflict {
			return err
		}
		// Another node starting at the same time made it first.
		h, err = s.registry.Get(ctx, DevHSMName)
	}
	if err != nil {
		return err
	}
	return s.rbac.SeedInitialRoles(ctx, h, extra)
}

// DefaultResourceGroup holds the dev HSM and what is created without one.
const DefaultResourceGroup = "keyward"

// seedControlPlane makes the bootstrap principal Owner of the subscription
// and creates the default resource group, once.
func (s *Server) seedControlPlane(ctx context.Context, adminAppID string) error {
	var node *store.NodeSettings
	if err := s.store.View(ctx, func(tx store.Tx) (err error) { node, err = tx.GetNode(ctx); return err }); err != nil {
		return err
	}
	if node.ControlPlaneSeeded {
		return nil
	}
	admin, err := s.dir.GetByAppID(ctx, adminAppID)
	if err != nil {
		return fmt.Errorf("server: bootstrap administrator: %w", err)
	}
	if _, _, err := s.cp.PutGroup(ctx, controlplane.ResourceGroup{Name: DefaultResourceGroup, Location: "local"}); err != nil {
		return err
	}
	_, err = s.armRBAC.Assign(ctx, armrbac.Assignment{Name: uuid.NewString(), Scope: "/subscriptions/" + s.sub,
		RoleID: armrbac.OwnerID, PrincipalID: admin.ID, PrincipalType: "ServicePrincipal"})
	if err != nil && !errors.Is(err, armrbac.ErrAssignmentExists) {
		return err
	}
	return s.updateNode(ctx, func(n *store.NodeSettings) { n.ControlPlaneSeeded = true })
}

// updateNode changes the node settings with change, in one transaction.
func (s *Server) updateNode(ctx context.Context, change func(*store.NodeSettings)) error {
	return s.store.Update(ctx, func(tx store.Tx) error {
		n, err := tx.GetNode(ctx)
		if err != nil {
			return err
		}
		change(n)
		return tx.UpdateNode(ctx, n)
	})
}

// kindCluster keeps cluster-wide settings in the store.
const kindCluster = "cluster"

// checkPublicURL compares this node's base URL with the one the cluster's
// nodes recorded (shared stores only) and warns when they differ: tokens
// name their issuer, so nodes with different public URLs refuse each
// other's tokens with a plain 401. The latest start records its URL, so a
// cluster moved to a new address warns until every node is restarted.
func (s *Server) checkPublicURL(ctx context.Context) error {
	if s.cfg.DatabaseURL == "" {
		return nil
	}
	var before string
	err := s.store.Update(ctx, func(tx store.Tx) error {
		if o, err := tx.GetObject(ctx, kindCluster, "public-url"); err == nil {
			before = string(o.Data)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if before == s.urls.authority {
			return nil
		}
		return tx.PutObject(ctx, &store.Object{Kind: kindCluster, ID: "public-url", Data: []byte(s.urls.authority)})
	})
	if err != nil {
		return fmt.Errorf("server: recording the public URL: %w", err)
	}
	if before != "" && before != s.urls.authority {
		s.log.Warn("this node's public URL differs from the one other nodes of the cluster started with: "+
			"they and this node will refuse each other's tokens; give every node the same --public-url",
			"publicUrl", s.urls.authority, "cluster", before)
	}
	return nil
}
