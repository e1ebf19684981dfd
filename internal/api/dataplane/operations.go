package dataplane

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/keys"
	"github.com/keyward/keyward/internal/rbac"
)

// operation is one row of the data plane's table: how a request is
// matched, what it is called in audit logs, which data action it needs on
// which scope, and the handler.
type operation struct {
	name   string
	method string
	path   []string
	action rbac.Action
	scope  func(*call) string
	handle func(*API, *call) error
	// beforeActivation marks operations an HSM serves before its security
	// domain is downloaded: role management (and, later, the domain itself).
	beforeActivation bool
}

func op(name, method string, p []string, action rbac.Action, scope func(*call) string, h func(*API, *call) error) operation {
	return operation{name: name, method: method, path: p, action: action, scope: scope, handle: h}
}

func hsmScope(*call) string      { return "/" }
func keysScope(*call) string     { return "/keys" }
func oneKeyScope(c *call) string { return "/keys/" + c.name }

func path(p ...string) []string { return p }

// OperationInfo describes one data-plane operation.
type OperationInfo struct {
	Name, Method, Path string
	Action             rbac.Action
}

// Operations lists every operation with its audit name and data action,
// in table order; docs and role tooling read it.
func (a *API) Operations() []OperationInfo { return infos(a.ops) }

// Operations lists the data plane's operations as (*API).Operations
// does, without an API: the role × operation fixture is checked against
// it.
func Operations() []OperationInfo { return infos(allOperations()) }

func infos(ops []operation) []OperationInfo {
	out := make([]OperationInfo, 0, len(ops))
	for _, op := range ops {
		out = append(out, OperationInfo{op.name, op.method, "/" + strings.Join(op.path, "/"), op.action})
	}
	return out
}

// allOperations is the whole table, in match order.
func allOperations() []operation {
	return append(append(append(operations(), roleOperations()...), securityDomainOperations()...), backupOperations()...)
}

// cryptoOps are the key operations with and without a version segment.
func cryptoOp(name, verb string, action rbac.Action, h func(*API, *call) error) []operation {
	return []operation{
		op(name, http.MethodPost, path("keys", "{name}", verb), action, oneKeyScope, h),
		op(name, http.MethodPost, path("keys", "{name}", "{version}", verb), action, oneKeyScope, h),
	}
}

func operations() []operation {
	ops := []operation{
		op("KeyList", http.MethodGet, path("keys"), rbac.KeysRead, keysScope, (*API).listKeys),
		op("KeyRestore", http.MethodPost, path("keys", "restore"), rbac.KeysRestore, keysScope, (*API).restore),
		op("KeyCreate", http.MethodPost, path("keys", "{name}", "create"), rbac.KeysCreate, keysScope, (*API).create),
		op("KeyImport", http.MethodPut, path("keys", "{name}"), rbac.KeysImport, keysScope, (*API).importKey),
		op("KeyDelete", http.MethodDelete, path("keys", "{name}"), rbac.KeysDelete, oneKeyScope, (*API).deleteKey),
		op("KeyBackup", http.MethodPost, path("keys", "{name}", "backup"), rbac.KeysBackup, oneKeyScope, (*API).backup),
		op("KeyRotate", http.MethodPost, path("keys", "{name}", "rotate"), rbac.KeysRotate, oneKeyScope, (*API).rotate),
		op("KeyListVersions", http.MethodGet, path("keys", "{name}", "versions"), rbac.KeysRead, oneKeyScope, (*API).listVersions),
		op("KeyRotationPolicyGet", http.MethodGet, path("keys", "{name}", "rotationpolicy"), rbac.KeysRead, oneKeyScope, (*API).getPolicy),
		op("KeyRotationPolicyUpdate", http.MethodPut, path("keys", "{name}", "rotationpolicy"), rbac.KeysWrite, oneKeyScope, (*API).setPolicy),
		op("KeyGet", http.MethodGet, path("keys", "{name}"), rbac.KeysRead, oneKeyScope, (*API).get),
		op("KeyGet", http.MethodGet, path("keys", "{name}", "{version}"), rbac.KeysRead, oneKeyScope, (*API).get),
		op("KeyUpdate", http.MethodPatch, path("keys", "{name}"), rbac.KeysWrite, oneKeyScope, (*API).update),
		op("KeyUpdate", http.MethodPatch, path("keys", "{name}", "{version}"), rbac.KeysWrite, oneKeyScope, (*API).update),
		op("KeyListDeleted", http.MethodGet, path("deletedkeys"), rbac.DeletedKeysRead, keysScope, (*API).listDeleted),
		op("KeyGetDeleted", http.MethodGet, path("deletedkeys", "{name}"), rbac.DeletedKeysRead, oneKeyScope, (*API).getDeleted),
		op("KeyRecover", http.MethodPost, path("deletedkeys", "{name}", "recover"), rbac.DeletedKeysRecover, oneKeyScope, (*API).recoverKey),
		op("KeyPurge", http.MethodDelete, path("deletedkeys", "{name}"), rbac.DeletedKeysPurge, oneKeyScope, (*API).purge),
		op("RngGet", http.MethodPost, path("rng"), rbac.RNG, hsmScope, (*API).random),
	}
	ops = append(ops, cryptoOp("KeySign", "sign", rbac.KeysSign, (*API).sign)...)
	ops = append(ops, cryptoOp("KeyVerify", "verify", rbac.KeysVerify, (*API).verify)...)
	ops = append(ops, cryptoOp("KeyEncrypt", "encrypt", rbac.KeysEncrypt, (*API).encrypt)...)
	ops = append(ops, cryptoOp("KeyDecrypt", "decrypt", rbac.KeysDecrypt, (*API).decrypt)...)
	ops = append(ops, cryptoOp("KeyWrap", "wrapkey", rbac.KeysWrap, (*API).wrap)...)
	ops = append(ops, cryptoOp("KeyUnwrap", "unwrapkey", rbac.KeysUnwrap, (*API).unwrap)...)
	ops = append(ops, cryptoOp("KeyRelease", "release", rbac.KeysRelease, (*API).releaseKey)...)
	return ops
}

func (a *API) create(c *call) error {
	var req createRequest
	if err := c.readJSON(&req); err != nil {
		return err
	}
	if req.Kty == "" {
		return fault.Invalidf("kty is required")
	}
	kty, err := kcrypto.ParseKeyType(req.Kty)
	if err != nil {
		return err
	}
	policy, err := policyIn(req.ReleasePolicy)
	if err != nil {
		return err
	}
	p := keys.CreateParams{Type: kty, Curve: kcrypto.Curve(req.Crv), Ops: req.KeyOps,
		Attributes: attributesIn(req.Attributes), Tags: req.Tags, ReleasePolicy: policy}
	if req.KeySize != nil {
		p.Size = *req.KeySize
	}
	if req.PublicExponent != nil {
		p.PublicExponent = *req.PublicExponent
	}
	v, err := a.keys.Create(c.ctx, c.hsm, c.name, p)
	if err != nil {
		return err
	}
	return c.ok(c.bundle(v))
}

func (a *API) importKey(c *call) error {
	var req importRequest
	if err := c.readJSON(&req); err != nil {
		return err
	}
	if req.Key == nil {
		return fault.Invalidf("key is required")
	}
	policy, err := policyIn(req.ReleasePolicy)
	if err != nil {
		return err
	}
	if len(req.Key.T) > 0 {
		return a.importTransfer(c, &req, policy)
	}
	j, err := jwkIn(req.Key)
	if err != nil {
		return err
	}
	v, err := a.keys.Import(c.ctx, c.hsm, c.name, keys.ImportParams{Key: j, Ops: req.Key.KeyOps,
		Attributes: attributesIn(req.Attributes), Tags: req.Tags, ReleasePolicy: policy})
	if err != nil {
		return err
	}
	return c.ok(c.bundle(v))
}

// importTransfer imports a key sent from another HSM under a
// key-exchange key of this one (BYOK): key_hsm holds the transfer blob,
// the .byok file az reads with --byok-file.
func (a *API) importTransfer(c *call, req *importRequest, policy *keys.ReleasePolicy) error {
	kty, err := kcrypto.ParseKeyType(req.Key.Kty)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(req.Key.Kty, "-HSM") {
		return fault.Invalidf("a key transfer blob (key_hsm) imports an HSM key: kty must be RSA-HSM, EC-HSM or oct-HSM")
	}
	blob, err := parseTransferBlob(req.Key.T)
	if err != nil {
		return err
	}
	kek, version, ok := a.localKeyID(c, blob.Header.Kid)
	if !ok {
		return keys.ErrNoKEK
	}
	v, err := a.keys.ImportTransfer(c.ctx, c.hsm, c.name, keys.TransferParams{KEKName: kek, KEKVersion: version, Ciphertext: blob.Ciphertext,
		Type: kty, Curve: kcrypto.Curve(req.Key.Crv), Ops: req.Key.KeyOps, Attributes: attributesIn(req.Attributes), Tags: req.Tags,
		ReleasePolicy: policy})
	if err != nil {
		return err
	}
	return c.ok(c.bundle(v))
}

// transferBlob is a .byok file: the key-exchange key's id and the
// CKM_RSA_AES_KEY_WRAP ciphertext, in a JWE-like envelope.
type transferBlob struct {
	SchemaVersion string `json:"schema_version"`
	Header        struct {
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Enc string `json:"enc"`
	} `json:"header"`
	Ciphertext httpx.B64 `json:"ciphertext"`
	Generator  string    `json:"generator"`
}

func parseTransferBlob(b []byte) (*transferBlob, error) {
	var t transferBlob
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fault.Invalidf("key_hsm is not a key transfer blob (the JSON of a .byok file)")
	}
	switch {
	case t.Header.Kid == "":
		return nil, fault.Invalidf("the key transfer blob names no key-exchange key (header.kid)")
	case t.Header.Alg != "dir" || t.Header.Enc != "CKM_RSA_AES_KEY_WRAP":
		return nil, fault.Invalidf("the key transfer blob must be alg dir and enc CKM_RSA_AES_KEY_WRAP, not %q and %q", t.Header.Alg, t.Header.Enc)
	case len(t.Ciphertext) == 0:
		return nil, fault.Invalidf("the key transfer blob has no ciphertext")
	}
	return &t, nil
}

// localKeyID splits a key id of this HSM ({base}/keys/{name}[/{version}],
// at any of the HSM's addresses) into its name and version.
func (a *API) localKeyID(c *call, kid string) (name, version string, ok bool) {
	u, err := url.Parse(kid)
	if err != nil || u.Scheme != "https" {
		return "", "", false
	}
	if hsm, ok := a.hostHSM(u.Host); !ok || !strings.EqualFold(hsm, c.hsm.Name) {
		return "", "", false
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 || len(parts) > 3 || !strings.EqualFold(parts[0], "keys") || parts[1] == "" {
		return "", "", false
	}
	if len(parts) == 3 {
		version = parts[2]
	}
	return parts[1], version, true
}

func (a *API) get(c *call) error {
	v, err := a.keys.Get(c.ctx, c.hsm, c.name, c.version)
	if err != nil {
		return err
	}
	return c.ok(c.bundle(v))
}

func (a *API) update(c *call) error {
	var req updateRequest
	if err := c.readJSON(&req); err != nil {
		return err
	}
	policy, err := policyIn(req.ReleasePolicy)
	if err != nil {
		return err
	}
	v, err := a.keys.Update(c.ctx, c.hsm, c.name, c.version, keys.UpdateParams{Ops: req.KeyOps,
		Attributes: attributesIn(req.Attributes), Tags: req.Tags, ReleasePolicy: policy})
	if err != nil {
		return err
	}
	return c.ok(c.bundle(v))
}

func (a *API) items(c *call, page *keys.Page, versioned bool) error {
	out := listResult[keyItem]{Value: []keyItem{}, NextLink: c.nextLink(page.Next)}
	for _, v := range page.Items {
		kid := c.base + "/keys/" + v.Name
		if versioned {
			kid = c.kid(v.Name, v.Version)
		}
		it := keyItem{Kid: kid, Attributes: attributesOut(v), Tags: v.Tags}
		if !v.Deleted.IsZero() {
			it.deletedFields = c.deleted(v)
		}
		out.Value = append(out.Value, it)
	}
	return c.ok(out)
}

func (a *API) listKeys(c *call) error {
	cursor, max, err := c.page()
	if err != nil {
		return err
	}
	page, err := a.keys.List(c.ctx, c.hsm, cursor, max)
	if err != nil {
		return err
	}
	return a.items(c, page, false)
}

func (a *API) listVersions(c *call) error {
	cursor, max, err := c.page()
	if err != nil {
		return err
	}
	page, err := a.keys.ListVersions(c.ctx, c.hsm, c.name, cursor, max)
	if err != nil {
		return err
	}
	return a.items(c, page, true)
}

func (a *API) listDeleted(c *call) error {
	cursor, max, err := c.page()
	if err != nil {
		return err
	}
	page, err := a.keys.ListDeleted(c.ctx, c.hsm, cursor, max)
	if err != nil {
		return err
	}
	return a.items(c, page, false)
}

func (a *API) deleteKey(c *call) error {
	v, err := a.keys.Delete(c.ctx, c.hsm, c.name)
	if err != nil {
		return err
	}
	return c.ok(c.bundle(v))
}

func (a *API) getDeleted(c *call) error {
	v, err := a.keys.GetDeleted(c.ctx, c.hsm, c.name)
	if err != nil {
		return err
	}
	return c.ok(c.bundle(v))
}

func (a *API) recoverKey(c *call) error {
	v, err := a.keys.Recover(c.ctx, c.hsm, c.name)
	if err != nil {
		return err
	}
	return c.ok(c.bundle(v))
}

func (a *API) purge(c *call) error {
	if err := a.keys.Purge(c.ctx, c.hsm, c.name); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) backup(c *call) error {
	b, err := a.keys.Backup(c.ctx, c.hsm, c.name)
	if err != nil {
		return err
	}
	return c.ok(blob{Value: b})
}

func (a *API) restore(c *call) error {
	var req blob
	if err := c.readJSON(&req); err != nil {
		return err
	}
	if len(req.Value) == 0 {
		return fault.Invalidf("value is required")
	}
	v, err := a.keys.Restore(c.ctx, c.hsm, req.Value)
	if err != nil {
		return err
	}
	return c.ok(c.bundle(v))
}

func (a *API) rotate(c *call) error {
	v, err := a.keys.Rotate(c.ctx, c.hsm, c.name)
	if err != nil {
		return err
	}
	return c.ok(c.bundle(v))
}

func (a *API) policyOut(c *call, p *keys.RotationPolicy) rotationPolicy {
	out := rotationPolicy{ID: c.base + "/keys/" + c.name + "/rotationpolicy", LifetimeActions: []lifetimeAction{},
		Attributes: &policyAttrs{ExpiryTime: p.ExpiryTime, Created: unixPtr(p.Created), Updated: unixPtr(p.Updated)}}
	for _, la := range p.LifetimeActions {
		var w lifetimeAction
		w.Trigger.TimeAfterCreate, w.Trigger.TimeBeforeExpiry, w.Action.Type = la.TimeAfterCreate, la.TimeBeforeExpiry, la.Action
		out.LifetimeActions = append(out.LifetimeActions, w)
	}
	return out
}

func (a *API) getPolicy(c *call) error {
	p, err := a.keys.GetRotationPolicy(c.ctx, c.hsm, c.name)
	if err != nil {
		return err
	}
	return c.ok(a.policyOut(c, p))
}

func (a *API) setPolicy(c *call) error {
	var req rotationPolicy
	if err := c.readJSON(&req); err != nil {
		return err
	}
	var p keys.RotationPolicy
	if req.Attributes != nil {
		p.ExpiryTime = req.Attributes.ExpiryTime
	}
	for _, la := range req.LifetimeActions {
		p.LifetimeActions = append(p.LifetimeActions, keys.LifetimeAction{Action: la.Action.Type,
			TimeAfterCreate: la.Trigger.TimeAfterCreate, TimeBeforeExpiry: la.Trigger.TimeBeforeExpiry})
	}
	out, err := a.keys.SetRotationPolicy(c.ctx, c.hsm, c.name, p)
	if err != nil {
		return err
	}
	return c.ok(a.policyOut(c, out))
}

func (a *API) random(c *call) error {
	var req rngRequest
	if err := c.readJSON(&req); err != nil {
		return err
	}
	if req.Count == nil {
		return fault.Invalidf("count is required")
	}
	b, err := a.keys.RandomBytes(*req.Count)
	if err != nil {
		return err
	}
	return c.ok(blob{Value: b})
}

func readOperation(c *call) (operationRequest, error) {
	var req operationRequest
	if err := c.readJSON(&req); err != nil {
		return req, err
	}
	if req.Alg == "" {
		return req, fault.Invalidf("alg is required")
	}
	if req.Value == nil {
		return req, fault.Invalidf("value is required")
	}
	return req, nil
}

func (c *call) result(alg string, r *keys.Result) error {
	return c.ok(operationResult{Kid: c.kid(c.name, r.Version), Value: r.Value, IV: r.IV, AAD: r.AAD, Tag: r.Tag, Alg: alg})
}

func (a *API) sign(c *call) error {
	var req signRequest
	if err := c.readJSON(&req); err != nil {
		return err
	}
	if req.Alg == "" || req.Value == nil {
		return fault.Invalidf("alg and value are required")
	}
	r, err := a.keys.Sign(c.ctx, c.hsm, c.name, c.version, kcrypto.Algorithm(req.Alg), req.Value)
	if err != nil {
		return err
	}
	return c.result(req.Alg, r)
}

func (a *API) verify(c *call) error {
	var req verifyRequest
	if err := c.readJSON(&req); err != nil {
		return err
	}
	if req.Alg == "" || req.Digest == nil || req.Value == nil {
		return fault.Invalidf("alg, digest and value are required")
	}
	ok, err := a.keys.Verify(c.ctx, c.hsm, c.name, c.version, kcrypto.Algorithm(req.Alg), req.Digest, req.Value)
	if err != nil {
		return err
	}
	return c.ok(verifyResult{Value: ok})
}

func (a *API) encrypt(c *call) error {
	req, err := readOperation(c)
	if err != nil {
		return err
	}
	r, err := a.keys.Encrypt(c.ctx, c.hsm, c.name, c.version, kcrypto.Algorithm(req.Alg),
		kcrypto.Sealed{Value: req.Value, IV: req.IV, AAD: req.AAD, Tag: req.Tag})
	if err != nil {
		return err
	}
	return c.result(req.Alg, r)
}

func (a *API) decrypt(c *call) error {
	req, err := readOperation(c)
	if err != nil {
		return err
	}
	r, err := a.keys.Decrypt(c.ctx, c.hsm, c.name, c.version, kcrypto.Algorithm(req.Alg),
		kcrypto.Sealed{Value: req.Value, IV: req.IV, AAD: req.AAD, Tag: req.Tag})
	if err != nil {
		return err
	}
	return c.result(req.Alg, r)
}

func (a *API) wrap(c *call) error {
	req, err := readOperation(c)
	if err != nil {
		return err
	}
	r, err := a.keys.WrapKey(c.ctx, c.hsm, c.name, c.version, kcrypto.Algorithm(req.Alg), req.Value)
	if err != nil {
		return err
	}
	return c.result(req.Alg, r)
}

func (a *API) unwrap(c *call) error {
	req, err := readOperation(c)
	if err != nil {
		return err
	}
	r, err := a.keys.UnwrapKey(c.ctx, c.hsm, c.name, c.version, kcrypto.Algorithm(req.Alg), req.Value)
	if err != nil {
		return err
	}
	return c.result(req.Alg, r)
}
