package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
)

// ResourceGroup is a container of resources.
type ResourceGroup struct {
	Name     string            `json:"name"`
	Location string            `json:"location"`
	Tags     map[string]string `json:"tags"`
	Created  time.Time         `json:"created"`
}

// Identity is a user-assigned managed identity: a resource whose
// principal lives in the directory.
type Identity struct {
	Name          string            `json:"name"`
	ResourceGroup string            `json:"resourceGroup"`
	Location      string            `json:"location"`
	Tags          map[string]string `json:"tags"`
	PrincipalID   string            `json:"principalId"`
	ClientID      string            `json:"clientId"`
}

const (
	kindGroup    = "resourceGroup"
	kindIdentity = "userAssignedIdentity"
)

// Errors.
var (
	ErrGroupNotFound    = fault.New(fault.NotFound, "ResourceGroupNotFound", "Resource group could not be found.")
	ErrIdentityNotFound = fault.New(fault.NotFound, "ResourceNotFound", "The managed identity was not found.")
)

var (
	groupName    = regexp.MustCompile(`^[-\w._()]{1,90}$`)
	identityName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{2,127}$`)
)

func (s *Service) get(ctx context.Context, kind, id string, v any) error {
	return s.Store.View(ctx, func(tx store.Tx) error { return getTx(ctx, tx, kind, id, v) })
}

func (s *Service) put(ctx context.Context, kind, id string, v any) error {
	return s.Store.Update(ctx, func(tx store.Tx) error { return putTx(ctx, tx, kind, id, v) })
}

func getTx(ctx context.Context, tx store.Tx, kind, id string, v any) error {
	o, err := tx.GetObject(ctx, kind, id)
	if err != nil {
		return err
	}
	return json.Unmarshal(o.Data, v)
}

func putTx(ctx context.Context, tx store.Tx, kind, id string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.PutObject(ctx, &store.Object{Kind: kind, ID: id, Data: data})
}

// PutGroup creates or updates a resource group; created tells which.
func (s *Service) PutGroup(ctx context.Context, g ResourceGroup) (ResourceGroup, bool, error) {
	if !groupName.MatchString(g.Name) || strings.HasSuffix(g.Name, ".") {
		return ResourceGroup{}, false, fault.Errorf(fault.Invalid, "InvalidResourceGroupName", "Resource group name '%s' is invalid: 1 to 90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'.", g.Name)
	}
	if g.Location == "" {
		g.Location = "local"
	}
	// Read and write in one transaction: two creations racing cannot both
	// think they created the group, nor one overwrite the other's.
	var created bool
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		var old ResourceGroup
		err := getTx(ctx, tx, kindGroup, g.Name, &old)
		created = errors.Is(err, store.ErrNotFound)
		switch {
		case err != nil && !created:
			return err
		case created:
			g.Created = time.Now().UTC()
		case old.Name != g.Name:
			return caseTwin("resource group", old.Name)
		default:
			g.Created = old.Created
		}
		return putTx(ctx, tx, kindGroup, g.Name, g)
	})
	return g, created, err
}

// Group returns a resource group.
func (s *Service) Group(ctx context.Context, name string) (ResourceGroup, error) {
	var g ResourceGroup
	err := s.get(ctx, kindGroup, name, &g)
	if errors.Is(err, store.ErrNotFound) {
		return g, ErrGroupNotFound.With("Resource group '%s' could not be found.", name)
	}
	return g, err
}

// Groups lists resource groups.
func (s *Service) Groups(ctx context.Context) ([]ResourceGroup, error) {
	var objs []*store.Object
	err := s.Store.View(ctx, func(tx store.Tx) (err error) { objs, err = tx.ListObjects(ctx, kindGroup, ""); return err })
	out := []ResourceGroup{}
	for _, o := range objs {
		var g ResourceGroup
		if json.Unmarshal(o.Data, &g) == nil {
			out = append(out, g)
		}
	}
	return out, err
}

// DeleteGroup removes an empty resource group.
func (s *Service) DeleteGroup(ctx context.Context, name string) error {
	if _, err := s.Group(ctx, name); err != nil {
		return err
	}
	hsms, err := s.HSMs.List(ctx)
	if err != nil {
		return err
	}
	for _, h := range hsms {
		if strings.EqualFold(h.ResourceGroup, name) {
			return fault.Errorf(fault.Conflict, "ResourceGroupNotEmpty", "Resource group '%s' still holds managed HSM %s.", name, h.Name)
		}
	}
	ids, err := s.Identities(ctx, name)
	if err != nil {
		return err
	}
	if len(ids) > 0 {
		return fault.Errorf(fault.Conflict, "ResourceGroupNotEmpty", "Resource group '%s' still holds managed identity %s.", name, ids[0].Name)
	}
	return s.Store.Update(ctx, func(tx store.Tx) error { return tx.DeleteObject(ctx, kindGroup, name) })
}

// caseTwin refuses a name that differs from an existing one by case only.
// Azure's names are case-insensitive, so the two would be one resource; the
// existing spelling is the one to use.
func caseTwin(what, existing string) error {
	return fault.Errorf(fault.Conflict, "Conflict", "A %s named '%s' already exists: names that differ only by case are the same name.", what, existing)
}

func identityKey(rg, name string) string { return strings.ToLower(rg + "/" + name) }

// PutIdentity creates a user-assigned managed identity (its directory
// principal too) or updates its tags.
func (s *Service) PutIdentity(ctx context.Context, id Identity) (Identity, bool, error) {
	if !identityName.MatchString(id.Name) {
		return Identity{}, false, fault.Invalidf("managed identity names have 3 to 128 letters, digits, '-' and '_', starting with a letter or digit")
	}
	g, err := s.Group(ctx, id.ResourceGroup)
	if err != nil {
		return Identity{}, false, err
	}
	id.ResourceGroup = g.Name
	var old Identity
	err = s.get(ctx, kindIdentity, identityKey(id.ResourceGroup, id.Name), &old)
	if err == nil {
		if old.Name != id.Name {
			return Identity{}, false, caseTwin("managed identity", old.Name)
		}
		old.Tags = id.Tags
		return old, false, s.put(ctx, kindIdentity, identityKey(id.ResourceGroup, id.Name), old)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return Identity{}, false, err
	}
	if id.Location == "" {
		id.Location = "local"
	}
	// The identity and its principal are made in one transaction.
	err = s.Store.Update(ctx, func(tx store.Tx) error {
		p, err := s.Dir.CreateManagedIdentityTx(ctx, tx, id.Name)
		if err != nil {
			return err
		}
		id.PrincipalID, id.ClientID = p.ID, p.AppID
		return putTx(ctx, tx, kindIdentity, identityKey(id.ResourceGroup, id.Name), id)
	})
	if err != nil {
		return Identity{}, false, err
	}
	return id, true, nil
}

// Identity returns a managed identity.
func (s *Service) Identity(ctx context.Context, rg, name string) (Identity, error) {
	var id Identity
	err := s.get(ctx, kindIdentity, identityKey(rg, name), &id)
	if errors.Is(err, store.ErrNotFound) {
		return id, ErrIdentityNotFound.With("The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/%s' under resource group '%s' was not found.", name, rg)
	}
	return id, err
}

// Identities lists a resource group's identities ("" for all).
func (s *Service) Identities(ctx context.Context, rg string) ([]Identity, error) {
	prefix := ""
	if rg != "" {
		prefix = strings.ToLower(rg) + "/"
	}
	var objs []*store.Object
	err := s.Store.View(ctx, func(tx store.Tx) (err error) { objs, err = tx.ListObjects(ctx, kindIdentity, prefix); return err })
	out := []Identity{}
	for _, o := range objs {
		var id Identity
		if json.Unmarshal(o.Data, &id) == nil {
			out = append(out, id)
		}
	}
	return out, err
}

// DeleteIdentity removes an identity and its principal.
func (s *Service) DeleteIdentity(ctx context.Context, rg, name string) error {
	id, err := s.Identity(ctx, rg, name)
	if err != nil {
		return err
	}
	if err := s.Dir.Delete(ctx, id.PrincipalID); err != nil && !errors.Is(err, identity.ErrNotFound) {
		return err
	}
	return s.Store.Update(ctx, func(tx store.Tx) error { return tx.DeleteObject(ctx, kindIdentity, identityKey(rg, name)) })
}

// AgentSecretLife is how long an identity agent's secret lasts: the agent
// fetches a new one when it restarts.
const AgentSecretLife = 24 * time.Hour

// AgentSecret gives an identity a short-lived client secret for the
// identity agent, which holds it in memory only.
func (s *Service) AgentSecret(ctx context.Context, rg, name string) (Identity, string, time.Time, error) {
	id, err := s.Identity(ctx, rg, name)
	if err != nil {
		return Identity{}, "", time.Time{}, err
	}
	secret, cred, err := s.Dir.ReplaceSecretFor(ctx, id.PrincipalID, "identity agent", AgentSecretLife)
	if err != nil {
		return Identity{}, "", time.Time{}, err
	}
	return id, secret, cred.Expires, nil
}
