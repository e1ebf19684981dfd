package keys

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"mime"
	"slices"
	"strings"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/releasepolicy"
	"github.com/keyward/keyward/internal/store"
)

// Secure key release: an exportable key leaves the HSM only wrapped for a
// workload that proves, with an attestation token, what it runs, and only
// when the token satisfies the key version's release policy. Every
// exportable version has a policy and no other version has one.

// ReleasePolicy is a version's secure key release policy.
type ReleasePolicy struct {
	ContentType string
	// Immutable policies cannot change, nor be taken away.
	Immutable bool
	// Data is the policy's JSON, in version 1.0.0's form once stored.
	Data []byte
}

// DefaultPolicyContentType is what a policy without a content type gets.
const DefaultPolicyContentType = "application/json; charset=utf-8"

var (
	// ErrExportableNeedsPolicy and ErrPolicyNeedsExportable are Azure's
	// refusals of a policy without exportable, and the reverse.
	ErrExportableNeedsPolicy = fault.New(fault.Invalid, "BadParameter", "Exportable keys must have release policy.")
	ErrPolicyNeedsExportable = fault.New(fault.Invalid, "BadParameter", "Non-exportable keys must not have release policy.")
	// ErrImmutablePolicy refuses a change to an immutable policy.
	ErrImmutablePolicy = fault.New(fault.Invalid, "BadParameter", "AKV.SKR.1020: Immutable Key Release Policy cannot be modified.")
	// ErrNotExportable refuses to release a version that is not exportable.
	ErrNotExportable = fault.New(fault.Invalid, "BadParameter", "The key is not exportable: only a key created or imported with exportable true and a release policy can be released.")
	// ErrExportableKEK refuses a key-exchange key that would be exportable:
	// released, it would open every BYOK blob ever sent to it.
	ErrExportableKEK = ErrKEKOps.With("A key-exchange key (import) cannot be exportable: its private part never leaves the HSM.")
	// ErrPolicyNotSatisfied refuses a token whose authority or claims the
	// policy does not accept; the failing condition is kept for the log.
	ErrPolicyNotSatisfied = fault.New(fault.Forbidden, "Forbidden", "The attestation token does not satisfy the key's release policy.")
)

// normalizePolicy checks a caller's policy and returns it as stored: its
// data rewritten in version 1.0.0's form, its content type defaulted.
func normalizePolicy(p *ReleasePolicy) (*ReleasePolicy, error) {
	out := &ReleasePolicy{ContentType: p.ContentType, Immutable: p.Immutable}
	if out.ContentType == "" {
		out.ContentType = DefaultPolicyContentType
	}
	if mt, _, err := mime.ParseMediaType(out.ContentType); err != nil || !strings.EqualFold(mt, "application/json") {
		return nil, releasepolicy.ErrInvalid.With("The release policy's contentType must be application/json, not %q.", p.ContentType)
	}
	parsed, err := releasepolicy.Parse(p.Data)
	if err != nil {
		return nil, err
	}
	out.Data = parsed.Marshal()
	return out, nil
}

// storedPolicy is a policy's stored form (store.KeyVersion.ReleasePolicy).
type storedPolicy struct {
	ContentType string          `json:"contentType"`
	Immutable   bool            `json:"immutable"`
	Data        json.RawMessage `json:"data"`
}

func encodePolicy(p *ReleasePolicy) []byte {
	b, _ := json.Marshal(storedPolicy{ContentType: p.ContentType, Immutable: p.Immutable, Data: p.Data}) // Data is valid JSON
	return b
}

// decodePolicy reads a stored policy; nil for none.
func decodePolicy(b []byte) *ReleasePolicy {
	if len(b) == 0 {
		return nil
	}
	var s storedPolicy
	if err := json.Unmarshal(b, &s); err != nil {
		return nil // written by this package
	}
	return &ReleasePolicy{ContentType: s.ContentType, Immutable: s.Immutable, Data: s.Data}
}

// releaseFields checks a new version's exportable attribute and policy
// together, and returns the policy to store (nil for a key that stays in).
func releaseFields(k kcrypto.Key, ops []string, exportable *bool, policy *ReleasePolicy) ([]byte, error) {
	export := exportable != nil && *exportable
	switch {
	case export && policy == nil:
		return nil, ErrExportableNeedsPolicy
	case !export && policy != nil:
		return nil, ErrPolicyNeedsExportable
	case !export:
		return nil, nil
	}
	if !kcrypto.Releasable(k.Type(), k.Curve()) {
		return nil, fault.Invalidf("only RSA, EC (P-256, P-384, P-521) and oct keys can be exportable, not %s", keyKind(k))
	}
	if slices.Contains(ops, OpImport) {
		return nil, ErrExportableKEK
	}
	if err := kcrypto.ReleaseAvailable(); err != nil {
		return nil, err
	}
	p, err := normalizePolicy(policy)
	if err != nil {
		return nil, err
	}
	return encodePolicy(p), nil
}

// updateRelease applies an update's exportable attribute and policy to v:
// exportable never changes; a policy replaces a mutable one, on an
// exportable version only.
func updateRelease(v *store.KeyVersion, exportable *bool, policy *ReleasePolicy) error {
	if exportable != nil && *exportable != v.Exportable {
		return fault.Invalidf("a key version's exportable attribute cannot change: create a new key, or a new version")
	}
	if policy == nil {
		return nil
	}
	if !v.Exportable {
		return ErrPolicyNeedsExportable
	}
	if cur := decodePolicy(v.ReleasePolicy); cur != nil && cur.Immutable {
		return ErrImmutablePolicy
	}
	p, err := normalizePolicy(policy)
	if err != nil {
		return err
	}
	v.ReleasePolicy = encodePolicy(p)
	return nil
}

// opRelease names key release in refusals; it is no JWK key operation, so
// key_ops do not govern it.
const opRelease = "release"

// ReleaseParams are a verified attestation token's parts that release
// reads, and how to wrap the key.
type ReleaseParams struct {
	Issuer string
	Claims map[string]any
	// Target is the workload's key (x-ms-runtime.keys), the key is
	// wrapped for.
	Target *rsa.PublicKey
	Enc    string // CKM_RSA_AES_KEY_WRAP (default), RSA_AES_KEY_WRAP_256 or _384
}

// Released is a key version wrapped for an attested workload.
type Released struct {
	Version *Version
	// Ciphertext is CKM_RSA_AES_KEY_WRAP of the key's private material.
	Ciphertext []byte
}

// ReleaseAuthorities returns the attestation authorities the release
// policy of a version of name ("" for the latest) names, after checking
// that the version can be released at all: its caller verifies the token
// of one of them, and of no other.
func (s *Service) ReleaseAuthorities(ctx context.Context, h *domain.HSM, name, version string) ([]string, error) {
	_, parsed, err := s.releasable(ctx, h, name, version)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(parsed.Authorities))
	for i, a := range parsed.Authorities {
		out[i] = a.URL
	}
	return out, nil
}

// releasable returns a usable, exportable version with its parsed policy.
func (s *Service) releasable(ctx context.Context, h *domain.HSM, name, version string) (*entry, *releasepolicy.Policy, error) {
	e, err := s.usable(ctx, h, name, version, opRelease)
	if err != nil {
		return nil, nil, err
	}
	policy := decodePolicy(e.meta.ReleasePolicy)
	if !e.meta.Exportable || policy == nil {
		return nil, nil, ErrNotExportable
	}
	if slices.Contains(e.meta.Ops, OpImport) { // made before KEKs were refused exportable
		return nil, nil, ErrExportableKEK
	}
	parsed, err := releasepolicy.Parse(policy.Data)
	if err != nil {
		return nil, nil, fmt.Errorf("keys: the stored release policy of %s/%s: %w", e.meta.Name, e.meta.Version, err)
	}
	return e, parsed, nil
}

// Release wraps a version of name ("" for the latest) for the workload
// p describes, when the version is exportable, usable, and its policy
// accepts the token's issuer and claims. The caller has verified the
// token and that the caller may release keys.
func (s *Service) Release(ctx context.Context, h *domain.HSM, name, version string, p ReleaseParams) (*Released, error) {
	e, parsed, err := s.releasable(ctx, h, name, version)
	if err != nil {
		return nil, err
	}
	if ok, why := parsed.Evaluate(p.Issuer, p.Claims); !ok {
		return nil, fault.Wrap(ErrPolicyNotSatisfied, fmt.Errorf("%s/%s: %s", e.meta.Name, e.meta.Version, why))
	}
	if p.Enc == "" {
		p.Enc = kcrypto.DefaultReleaseEnc
	}
	ct, err := kcrypto.WrapForRelease(s.rand, e.key, p.Target, p.Enc)
	if err != nil {
		return nil, err
	}
	return &Released{Version: s.view(h, &e.meta, nil), Ciphertext: ct}, nil
}

// keyKind names a key's type and, where it has one, its curve or
// parameter set: "RSA", "EC P-256", "ML-DSA-65".
func keyKind(k kcrypto.Key) string {
	switch c := string(k.Curve()); {
	case c == "":
		return string(k.Type())
	case strings.HasPrefix(c, string(k.Type())):
		return c
	default:
		return string(k.Type()) + " " + c
	}
}
