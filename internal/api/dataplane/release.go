package dataplane

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/keys"
)

// ReleaseSigner signs release results as Managed HSM does: a compact JWS
// by the key of the HSM's TLS certificate, whose chain travels in x5c, so
// that the workload checks it as it checks the HSM's address.
type ReleaseSigner struct {
	signer jose.Signer
}

// NewReleaseSigner returns a signer for cert's key (ECDSA P-256 or RSA)
// and chain.
func NewReleaseSigner(cert tls.Certificate) (*ReleaseSigner, error) {
	if len(cert.Certificate) == 0 {
		return nil, fmt.Errorf("dataplane: the TLS certificate has no chain")
	}
	var alg jose.SignatureAlgorithm
	switch k := cert.PrivateKey.(type) {
	case *ecdsa.PrivateKey:
		alg = map[int]jose.SignatureAlgorithm{256: jose.ES256, 384: jose.ES384, 521: jose.ES512}[k.Curve.Params().BitSize]
	case *rsa.PrivateKey:
		alg = jose.RS256
	}
	if alg == "" {
		return nil, fmt.Errorf("dataplane: release results are signed with an RSA or NIST-curve ECDSA TLS key, not %T", cert.PrivateKey)
	}
	chain := make([]string, len(cert.Certificate))
	for i, der := range cert.Certificate {
		chain[i] = base64.StdEncoding.EncodeToString(der) // x5c is standard base64 (RFC 7515 §4.1.6)
	}
	thumb := sha256.Sum256(cert.Certificate[0])
	thumbprint := base64.RawURLEncoding.EncodeToString(thumb[:])
	opts := (&jose.SignerOptions{}).WithHeader("x5c", chain).WithHeader("x5t#S256", thumbprint).WithHeader("kid", thumbprint)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: cert.PrivateKey.(crypto.Signer)}, opts)
	if err != nil {
		return nil, fmt.Errorf("dataplane: release signer: %w", err)
	}
	return &ReleaseSigner{signer: s}, nil
}

func (s *ReleaseSigner) sign(payload []byte) (string, error) {
	obj, err := s.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("dataplane: signing a release: %w", err)
	}
	return obj.CompactSerialize()
}

// maxNonce bounds the nonce a release echoes in what the HSM signs.
const maxNonce = 256

type releaseRequest struct {
	Target string `json:"target"`
	Nonce  string `json:"nonce"`
	Enc    string `json:"enc"`
}

// The release result's payload, as Managed HSM writes it: fields in
// alphabetical order, the key's type without -HSM, and the key's private
// material only wrapped, in key_hsm.
type releasePayload struct {
	Request  releaseEcho `json:"request"`
	Response struct {
		Key releasedBundle `json:"key"`
	} `json:"response"`
}

type releaseEcho struct {
	APIVersion string `json:"api-version"`
	Enc        string `json:"enc"`
	Kid        string `json:"kid"`
	Nonce      string `json:"nonce,omitempty"`
}

type releasedBundle struct {
	Attributes    keyAttributes     `json:"attributes"`
	Key           releasedKey       `json:"key"`
	ReleasePolicy *releasePolicy    `json:"release_policy,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
}

type releasedKey struct {
	Crv    string    `json:"crv,omitempty"`
	E      httpx.B64 `json:"e,omitempty"`
	KeyHSM httpx.B64 `json:"key_hsm"`
	KeyOps []string  `json:"key_ops"`
	Kid    string    `json:"kid"`
	Kty    string    `json:"kty"`
	N      httpx.B64 `json:"n,omitempty"`
	X      httpx.B64 `json:"x,omitempty"`
	Y      httpx.B64 `json:"y,omitempty"`
}

// releaseBlob is key_hsm: the wrapped key, naming the workload's key.
type releaseBlob struct {
	Ciphertext httpx.B64 `json:"ciphertext"`
	Header     struct {
		Alg string `json:"alg"`
		Enc string `json:"enc"`
		Kid string `json:"kid"`
	} `json:"header"`
	SchemaVersion string `json:"schema_version"`
}

// releaseKey answers POST /keys/{name}[/{version}]/release: the key
// wrapped for the workload an attestation token describes, when the key's
// release policy accepts the token.
func (a *API) releaseKey(c *call) error {
	var req releaseRequest
	if err := c.readJSON(&req); err != nil {
		return err
	}
	if req.Target == "" {
		return fault.Invalidf("target is required: an attestation token")
	}
	if a.release.Verifier == nil || a.release.Signer == nil {
		return fault.Errorf(fault.Unavailable, "ServiceUnavailable", "key release is not available on this server")
	}
	if len(req.Nonce) > maxNonce {
		return fault.Invalidf("nonce has at most %d characters", maxNonce)
	}
	// The key first: whether it can be released at all, and which
	// authorities its policy trusts, whose keys alone are fetched.
	authorities, err := a.keys.ReleaseAuthorities(c.ctx, c.hsm, c.name, c.version)
	if err != nil {
		return err
	}
	tok, err := a.release.Verifier.Verify(c.ctx, req.Target, authorities)
	if err != nil {
		return err
	}
	enc := req.Enc
	if enc == "" {
		enc = kcrypto.DefaultReleaseEnc
	}
	rel, err := a.keys.Release(c.ctx, c.hsm, c.name, c.version, keys.ReleaseParams{Issuer: tok.Issuer, Claims: tok.Claims,
		Target: tok.RuntimeKey, Enc: enc})
	if err != nil {
		return err
	}
	var blob releaseBlob
	blob.Ciphertext, blob.SchemaVersion = rel.Ciphertext, "1.0"
	blob.Header.Alg, blob.Header.Enc, blob.Header.Kid = "dir", enc, tok.RuntimeKeyID
	keyHSM, err := json.Marshal(blob)
	if err != nil {
		return fmt.Errorf("dataplane: encoding key_hsm: %w", err)
	}
	v := rel.Version
	called := c.base + "/keys/" + c.name
	if c.version != "" {
		called += "/" + c.version
	}
	var p releasePayload
	p.Request = releaseEcho{APIVersion: c.r.URL.Query().Get("api-version"), Enc: enc, Kid: called, Nonce: req.Nonce}
	pub := v.Public
	ops := v.Ops
	if ops == nil {
		ops = []string{}
	}
	p.Response.Key = releasedBundle{Attributes: attributesOut(v), ReleasePolicy: policyOut(v.ReleasePolicy), Tags: v.Tags,
		Key: releasedKey{Kid: c.kid(v.Name, v.Version), Kty: string(v.Type), KeyOps: ops, KeyHSM: keyHSM,
			N: pub.N, E: pub.E, Crv: string(pub.Crv), X: pub.X, Y: pub.Y}}
	payload, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("dataplane: encoding a release: %w", err)
	}
	jws, err := a.release.Signer.sign(payload)
	if err != nil {
		return err
	}
	return c.ok(struct {
		Value string `json:"value"`
	}{jws})
}
