package dataplane

import (
	"time"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/keys"
)

// Wire models of the Managed HSM keys API. Field names are exactly those of
// the REST API; timestamps are integer Unix seconds and bytes unpadded
// base64url, as Azure clients require.

type jsonWebKey struct {
	Kid    string    `json:"kid,omitempty"`
	Kty    string    `json:"kty,omitempty"`
	KeyOps []string  `json:"key_ops,omitempty"`
	N      httpx.B64 `json:"n,omitempty"`
	E      httpx.B64 `json:"e,omitempty"`
	D      httpx.B64 `json:"d,omitempty"`
	DP     httpx.B64 `json:"dp,omitempty"`
	DQ     httpx.B64 `json:"dq,omitempty"`
	QI     httpx.B64 `json:"qi,omitempty"`
	P      httpx.B64 `json:"p,omitempty"`
	Q      httpx.B64 `json:"q,omitempty"`
	K      httpx.B64 `json:"k,omitempty"`
	T      httpx.B64 `json:"key_hsm,omitempty"`
	Crv    string    `json:"crv,omitempty"`
	X      httpx.B64 `json:"x,omitempty"`
	Y      httpx.B64 `json:"y,omitempty"`
	// Pub and Seed are ML-DSA's and ML-KEM's public key and private seed,
	// as the JOSE drafts for them name them (Keyward extensions).
	Pub  httpx.B64 `json:"pub,omitempty"`
	Seed httpx.B64 `json:"seed,omitempty"`
}

type keyAttributes struct {
	Enabled         *bool  `json:"enabled,omitempty"`
	NotBefore       *int64 `json:"nbf,omitempty"`
	Expires         *int64 `json:"exp,omitempty"`
	Created         *int64 `json:"created,omitempty"`
	Updated         *int64 `json:"updated,omitempty"`
	RecoverableDays *int   `json:"recoverableDays,omitempty"`
	RecoveryLevel   string `json:"recoveryLevel,omitempty"`
	Exportable      *bool  `json:"exportable,omitempty"`
}

type keyBundle struct {
	Key           jsonWebKey        `json:"key"`
	Attributes    keyAttributes     `json:"attributes"`
	Tags          map[string]string `json:"tags,omitempty"`
	ReleasePolicy *releasePolicy    `json:"release_policy,omitempty"`
	deletedFields
}

// releasePolicy is KeyReleasePolicy: data is the policy's JSON.
type releasePolicy struct {
	ContentType string    `json:"contentType,omitempty"`
	Immutable   *bool     `json:"immutable,omitempty"`
	Data        httpx.B64 `json:"data"`
}

type keyItem struct {
	Kid        string            `json:"kid"`
	Attributes keyAttributes     `json:"attributes"`
	Tags       map[string]string `json:"tags,omitempty"`
	deletedFields
}

type deletedFields struct {
	RecoveryID         string `json:"recoveryId,omitempty"`
	DeletedDate        *int64 `json:"deletedDate,omitempty"`
	ScheduledPurgeDate *int64 `json:"scheduledPurgeDate,omitempty"`
}

type listResult[T any] struct {
	Value    []T     `json:"value"`
	NextLink *string `json:"nextLink"`
}

type createRequest struct {
	Kty            string            `json:"kty"`
	KeySize        *int              `json:"key_size"`
	PublicExponent *int              `json:"public_exponent"`
	KeyOps         []string          `json:"key_ops"`
	Attributes     *keyAttributes    `json:"attributes"`
	Tags           map[string]string `json:"tags"`
	Crv            string            `json:"crv"`
	ReleasePolicy  *releasePolicy    `json:"release_policy"`
}

type importRequest struct {
	Key           *jsonWebKey       `json:"key"`
	HSM           *bool             `json:"Hsm"`
	Attributes    *keyAttributes    `json:"attributes"`
	Tags          map[string]string `json:"tags"`
	ReleasePolicy *releasePolicy    `json:"release_policy"`
}

type updateRequest struct {
	KeyOps        []string          `json:"key_ops"`
	Attributes    *keyAttributes    `json:"attributes"`
	Tags          map[string]string `json:"tags"`
	ReleasePolicy *releasePolicy    `json:"release_policy"`
}

type operationRequest struct {
	Alg   string    `json:"alg"`
	Value httpx.B64 `json:"value"`
	IV    httpx.B64 `json:"iv"`
	AAD   httpx.B64 `json:"aad"`
	Tag   httpx.B64 `json:"tag"`
}

type operationResult struct {
	Kid   string    `json:"kid"`
	Value httpx.B64 `json:"value"`
	IV    httpx.B64 `json:"iv,omitempty"`
	AAD   httpx.B64 `json:"aad,omitempty"`
	Tag   httpx.B64 `json:"tag,omitempty"`
	Alg   string    `json:"alg,omitempty"`
}

type signRequest struct {
	Alg   string    `json:"alg"`
	Value httpx.B64 `json:"value"`
}

type verifyRequest struct {
	Alg    string    `json:"alg"`
	Digest httpx.B64 `json:"digest"`
	Value  httpx.B64 `json:"value"`
}

type verifyResult struct {
	Value bool `json:"value"`
}

type blob struct {
	Value httpx.B64 `json:"value"`
}

type rngRequest struct {
	Count *int `json:"count"`
}

type rotationPolicy struct {
	ID              string           `json:"id,omitempty"`
	LifetimeActions []lifetimeAction `json:"lifetimeActions"`
	Attributes      *policyAttrs     `json:"attributes,omitempty"`
}

type lifetimeAction struct {
	Trigger struct {
		TimeAfterCreate  string `json:"timeAfterCreate,omitempty"`
		TimeBeforeExpiry string `json:"timeBeforeExpiry,omitempty"`
	} `json:"trigger"`
	Action struct {
		Type string `json:"type"`
	} `json:"action"`
}

type policyAttrs struct {
	ExpiryTime string `json:"expiryTime,omitempty"`
	Created    *int64 `json:"created,omitempty"`
	Updated    *int64 `json:"updated,omitempty"`
}

// hsmKty is the key type as Managed HSM reports it: always "-HSM".
// hsmKty is a key type as Managed HSM names it ("EC-HSM"); Keyward's
// post-quantum types have no -HSM form.
func hsmKty(t kcrypto.KeyType) string {
	if t == kcrypto.MLDSA || t == kcrypto.MLKEM {
		return string(t)
	}
	return string(t) + "-HSM"
}

func unixPtr(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	u := t.Unix()
	return &u
}

func fromUnixPtr(p *int64) *time.Time {
	if p == nil {
		return nil
	}
	t := time.Unix(*p, 0).UTC()
	return &t
}

func attributesOut(v *keys.Version) keyAttributes {
	days := v.RecoverableDays
	exportable := v.Exportable
	return keyAttributes{Enabled: &v.Enabled, NotBefore: unixPtr(v.NotBefore), Expires: unixPtr(v.Expires),
		Created: unixPtr(v.Created), Updated: unixPtr(v.Updated), RecoverableDays: &days, RecoveryLevel: v.RecoveryLevel,
		Exportable: &exportable}
}

// policyIn reads a request's release policy; nil when none is given.
func policyIn(p *releasePolicy) (*keys.ReleasePolicy, error) {
	if p == nil {
		return nil, nil
	}
	if len(p.Data) == 0 {
		return nil, fault.Invalidf("release_policy.data is required: the policy's JSON, base64url")
	}
	return &keys.ReleasePolicy{ContentType: p.ContentType, Immutable: p.Immutable != nil && *p.Immutable, Data: p.Data}, nil
}

func policyOut(p *keys.ReleasePolicy) *releasePolicy {
	if p == nil {
		return nil
	}
	immutable := p.Immutable
	return &releasePolicy{ContentType: p.ContentType, Immutable: &immutable, Data: p.Data}
}

func attributesIn(a *keyAttributes) keys.Attributes {
	if a == nil {
		return keys.Attributes{}
	}
	return keys.Attributes{Enabled: a.Enabled, NotBefore: fromUnixPtr(a.NotBefore), Expires: fromUnixPtr(a.Expires), Exportable: a.Exportable}
}

func publicOut(kid string, v *keys.Version) jsonWebKey {
	p := v.Public
	ops := v.Ops
	if ops == nil {
		ops = []string{}
	}
	return jsonWebKey{Kid: kid, Kty: hsmKty(v.Type), KeyOps: ops, N: p.N, E: p.E, Crv: string(p.Crv), X: p.X, Y: p.Y, Pub: p.Pub}
}

func jwkIn(j *jsonWebKey) (kcrypto.JSONWebKey, error) {
	kty, err := kcrypto.ParseKeyType(j.Kty)
	if err != nil {
		return kcrypto.JSONWebKey{}, err
	}
	return kcrypto.JSONWebKey{Kty: kty, Crv: kcrypto.Curve(j.Crv), N: j.N, E: j.E, X: j.X, Y: j.Y,
		D: j.D, P: j.P, Q: j.Q, DP: j.DP, DQ: j.DQ, QI: j.QI, K: j.K, Pub: j.Pub, Seed: j.Seed}, nil
}
