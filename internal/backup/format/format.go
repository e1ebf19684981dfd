// Package format holds the record types of Keyward's backups: the full
// backup of an HSM (package backup) and the backup of one key (package
// keys), with their conversions to and from the store's types.
//
// A backup outlives the code that wrote it, so its records are declared
// here with explicit JSON names and are never the store's structs
// themselves: renaming a store field must not change what a backup says,
// and a backup written today must restore tomorrow. The names are those
// format 1 was first written with (the Go field names of the store
// structs of the time); testdata in packages backup and keys holds
// blobs of that format that the tests restore.
//
// A new field may be added with omitempty, so format 1 readers and blobs
// stay valid. Removing or renaming one needs a new Version.
package format

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// Version is the format of key backups, and of the full backups written
// before StreamVersion; both are still read.
const Version = 1

// StreamVersion is the format full backups are written in. Its sealed
// content is an age file (filippo.io/age: 64 KiB chunks, each
// authenticated, the last one marked) whose file key is sealed under the
// domain key, and whose plaintext is JSON lines: a Header, then Records,
// the last of them End. So a backup is written and read a record at a
// time, never whole in memory, and a cut anywhere is detected.
const StreamVersion = 2

// Full is the plaintext of a full backup of an HSM.
type Full struct {
	Format      int              `json:"format"`
	DomainID    string           `json:"domainId"`
	Keys        []Key            `json:"keys"`
	Versions    []KeyVersion     `json:"versions"`
	Roles       []RoleDefinition `json:"roles"`
	Assignments []RoleAssignment `json:"assignments"`
}

// Header is the first line of a StreamVersion backup.
type Header struct {
	Format   int    `json:"format"`
	DomainID string `json:"domainId"`
}

// Record is one line after the Header: exactly one field is set. A key's
// Record comes before its versions'.
type Record struct {
	Role       *RoleDefinition `json:"role,omitempty"`
	Assignment *RoleAssignment `json:"assignment,omitempty"`
	Key        *Key            `json:"key,omitempty"`
	Version    *KeyVersion     `json:"version,omitempty"`
	End        *End            `json:"end,omitempty"`
}

// End is the last Record: what came before it, counted.
type End struct {
	Roles       int `json:"roles"`
	Assignments int `json:"assignments"`
	Keys        int `json:"keys"`
	Versions    int `json:"versions"`
}

// KeyBackup is the plaintext of a backup of one key and all its versions.
type KeyBackup struct {
	Format   int          `json:"format"`
	DomainID string       `json:"domainId"`
	Key      Key          `json:"key"`
	Versions []KeyVersion `json:"versions"`
	// RotationPolicy was declared by format 1 but never written: the
	// key's policy travels in Key.RotationPolicy.
	RotationPolicy json.RawMessage `json:"rotationPolicy,omitempty"`
}

// Key is a key's record; its versions are separate.
type Key struct {
	HSM            string    `json:"HSM"`
	Name           string    `json:"Name"`
	Created        time.Time `json:"Created"`
	Deleted        time.Time `json:"Deleted"`
	ScheduledPurge time.Time `json:"ScheduledPurge"`
	RotationPolicy []byte    `json:"RotationPolicy"`
}

// KeyVersion is one version of a key. Sealed is its private material,
// still sealed under the domain key as it was stored.
type KeyVersion struct {
	HSM        string            `json:"HSM"`
	Name       string            `json:"Name"`
	Version    string            `json:"Version"`
	Seq        int64             `json:"Seq"`
	Kty        string            `json:"Kty"`
	Ops        []string          `json:"Ops"`
	Enabled    bool              `json:"Enabled"`
	NotBefore  time.Time         `json:"NotBefore"`
	Expires    time.Time         `json:"Expires"`
	Created    time.Time         `json:"Created"`
	Updated    time.Time         `json:"Updated"`
	Tags       map[string]string `json:"Tags"`
	Exportable bool              `json:"Exportable"`
	// ReleasePolicy is absent from backups of versions without one (and
	// from every backup made before key release).
	ReleasePolicy []byte `json:"ReleasePolicy,omitempty"`
	Public        []byte `json:"Public"`
	Sealed        []byte `json:"Sealed"`
}

// Permission is one permission block of a role definition.
type Permission struct {
	Actions        []string `json:"actions"`
	NotActions     []string `json:"notActions"`
	DataActions    []string `json:"dataActions"`
	NotDataActions []string `json:"notDataActions"`
}

// RoleDefinition is a custom role.
type RoleDefinition struct {
	HSM              string       `json:"HSM"`
	ID               string       `json:"ID"`
	Name             string       `json:"Name"`
	Description      string       `json:"Description"`
	Permissions      []Permission `json:"Permissions"`
	AssignableScopes []string     `json:"AssignableScopes"`
	Created          time.Time    `json:"Created"`
	Updated          time.Time    `json:"Updated"`
}

// RoleAssignment is a role assignment.
type RoleAssignment struct {
	HSM              string    `json:"HSM"`
	ID               string    `json:"ID"`
	Scope            string    `json:"Scope"`
	RoleDefinitionID string    `json:"RoleDefinitionID"`
	PrincipalID      string    `json:"PrincipalID"`
	Created          time.Time `json:"Created"`
	Start            time.Time `json:"Start"`
	End              time.Time `json:"End"`
	Source           string    `json:"Source"`
	CreatedBy        string    `json:"CreatedBy"`
}

// FromKey returns k's record.
func FromKey(k *store.Key) Key {
	return Key{HSM: k.HSM, Name: k.Name, Created: k.Created, Deleted: k.Deleted, ScheduledPurge: k.ScheduledPurge,
		RotationPolicy: slices.Clone(k.RotationPolicy)}
}

// Store returns the store's form of k.
func (k *Key) Store() store.Key {
	return store.Key{HSM: k.HSM, Name: k.Name, Created: k.Created, Deleted: k.Deleted, ScheduledPurge: k.ScheduledPurge,
		RotationPolicy: slices.Clone(k.RotationPolicy)}
}

// FromKeyVersion returns v's record.
func FromKeyVersion(v *store.KeyVersion) KeyVersion {
	return KeyVersion{HSM: v.HSM, Name: v.Name, Version: v.Version, Seq: v.Seq, Kty: v.Kty, Ops: slices.Clone(v.Ops),
		Enabled: v.Enabled, NotBefore: v.NotBefore, Expires: v.Expires, Created: v.Created, Updated: v.Updated,
		Tags: maps.Clone(v.Tags), Exportable: v.Exportable, ReleasePolicy: slices.Clone(v.ReleasePolicy), Public: slices.Clone(v.Public), Sealed: slices.Clone(v.Sealed)}
}

// Store returns the store's form of v.
func (v *KeyVersion) Store() store.KeyVersion {
	return store.KeyVersion{HSM: v.HSM, Name: v.Name, Version: v.Version, Seq: v.Seq, Kty: v.Kty, Ops: slices.Clone(v.Ops),
		Enabled: v.Enabled, NotBefore: v.NotBefore, Expires: v.Expires, Created: v.Created, Updated: v.Updated,
		Tags: maps.Clone(v.Tags), Exportable: v.Exportable, ReleasePolicy: slices.Clone(v.ReleasePolicy), Public: slices.Clone(v.Public), Sealed: slices.Clone(v.Sealed)}
}

// FromKeyVersions returns the records of vs.
func FromKeyVersions(vs []store.KeyVersion) []KeyVersion {
	out := make([]KeyVersion, len(vs))
	for i := range vs {
		out[i] = FromKeyVersion(&vs[i])
	}
	return out
}

// FromRoleDefinition returns d's record.
func FromRoleDefinition(d *store.RoleDefinition) RoleDefinition {
	r := RoleDefinition{HSM: d.HSM, ID: d.ID, Name: d.Name, Description: d.Description,
		AssignableScopes: slices.Clone(d.AssignableScopes), Created: d.Created, Updated: d.Updated}
	if d.Permissions != nil {
		r.Permissions = make([]Permission, len(d.Permissions))
		for i, p := range d.Permissions {
			r.Permissions[i] = Permission{Actions: slices.Clone(p.Actions), NotActions: slices.Clone(p.NotActions),
				DataActions: slices.Clone(p.DataActions), NotDataActions: slices.Clone(p.NotDataActions)}
		}
	}
	return r
}

// Store returns the store's form of d.
func (d *RoleDefinition) Store() *store.RoleDefinition {
	r := &store.RoleDefinition{HSM: d.HSM, ID: d.ID, Name: d.Name, Description: d.Description,
		AssignableScopes: slices.Clone(d.AssignableScopes), Created: d.Created, Updated: d.Updated}
	if d.Permissions != nil {
		r.Permissions = make([]store.Permission, len(d.Permissions))
		for i, p := range d.Permissions {
			r.Permissions[i] = store.Permission{Actions: slices.Clone(p.Actions), NotActions: slices.Clone(p.NotActions),
				DataActions: slices.Clone(p.DataActions), NotDataActions: slices.Clone(p.NotDataActions)}
		}
	}
	return r
}

// FromRoleAssignment returns a's record.
func FromRoleAssignment(a *store.RoleAssignment) RoleAssignment {
	return RoleAssignment{HSM: a.HSM, ID: a.ID, Scope: a.Scope, RoleDefinitionID: a.RoleDefinitionID, PrincipalID: a.PrincipalID,
		Created: a.Created, Start: a.Start, End: a.End, Source: a.Source, CreatedBy: a.CreatedBy}
}

// Store returns the store's form of a.
func (a *RoleAssignment) Store() *store.RoleAssignment {
	return &store.RoleAssignment{HSM: a.HSM, ID: a.ID, Scope: a.Scope, RoleDefinitionID: a.RoleDefinitionID, PrincipalID: a.PrincipalID,
		Created: a.Created, Start: a.Start, End: a.End, Source: a.Source, CreatedBy: a.CreatedBy}
}
