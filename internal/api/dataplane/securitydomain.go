package dataplane

import (
	"crypto/fips140"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/securitydomain"
)

// Wire models of the security-domain API.

type sdJWK struct {
	Kid       string   `json:"kid,omitempty"`
	Kty       string   `json:"kty"`
	KeyOps    []string `json:"key_ops,omitempty"`
	N         string   `json:"n"`
	E         string   `json:"e"`
	X5c       []string `json:"x5c"`
	Use       string   `json:"use,omitempty"`
	X5t       string   `json:"x5t,omitempty"`
	X5tS256   string   `json:"x5t#S256,omitempty"`
	Algorithm string   `json:"alg,omitempty"`
}

type certificateInfo struct {
	Certificates []sdJWK `json:"certificates"`
	Required     *int    `json:"required"`
}

type sdValue struct {
	Value string `json:"value"`
}

type sdStatus struct {
	Status        string `json:"status"`
	StatusDetails string `json:"status_details"`
}

type transferKey struct {
	KeyFormat   string `json:"key_format"`
	TransferKey sdJWK  `json:"transfer_key"`
}

func securityDomainOperations() []operation {
	ops := []operation{
		op("SecurityDomainBackup", http.MethodPost, path("securitydomain", "download"), rbac.SecurityDomainDownload, hsmScope, (*API).sdDownload),
		op("SecurityDomainBackupStatus", http.MethodGet, path("securitydomain", "download", "pending"), rbac.SecurityDomainDownloadRead, hsmScope, (*API).sdStatus),
		op("SecurityDomainTransferKey", http.MethodGet, path("securitydomain", "upload"), rbac.SecurityDomainTransferKey, hsmScope, (*API).sdTransferKey),
		op("SecurityDomainRestore", http.MethodPost, path("securitydomain", "upload"), rbac.SecurityDomainUpload, hsmScope, (*API).sdUpload),
		op("SecurityDomainRestoreStatus", http.MethodGet, path("securitydomain", "upload", "pending"), rbac.SecurityDomainUploadRead, hsmScope, (*API).sdStatus),
		// Keyward's two-person rule for downloads from an active HSM:
		// approvers need the download right themselves, at "/".
		op("SecurityDomainDownloadRequestList", http.MethodGet, path("securitydomain", "download", "requests"), rbac.SecurityDomainDownload, hsmScope, (*API).sdRequests),
		op("SecurityDomainDownloadApprove", http.MethodPost, path("securitydomain", "download", "requests", "{id}", "approve"), rbac.SecurityDomainDownload, hsmScope, (*API).sdApprove),
		op("SettingsList", http.MethodGet, path("settings"), rbac.RoleDefinitionsRead, hsmScope, (*API).settingsList),
		op("SettingsGet", http.MethodGet, path("settings", "{id}"), rbac.RoleDefinitionsRead, hsmScope, (*API).settingGet),
		// The only setting is the two-person rule itself: changing it
		// needs the download right (Administrator's), not merely role
		// management, which Crypto Officers have too.
		op("SettingsUpdate", http.MethodPatch, path("settings", "{id}"), rbac.SecurityDomainDownload, hsmScope, (*API).settingUpdate),
	}
	for i := range ops {
		ops[i].beforeActivation = true
	}
	return ops
}

// decodeCert reads an x5c entry: standard base64 DER, as Azure sends it
// (base64url is accepted too).
func decodeCert(s string) (*x509.Certificate, error) {
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		der, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func (a *API) sdDownload(c *call) error {
	var req certificateInfo
	if err := c.readJSON(&req); err != nil {
		return err
	}
	if req.Required == nil {
		return fault.Invalidf("required (the quorum) is required")
	}
	var certs []*x509.Certificate
	for i, j := range req.Certificates {
		if len(j.X5c) == 0 {
			return fault.Invalidf("certificate %d has no x5c", i+1)
		}
		cert, err := decodeCert(j.X5c[0])
		if err != nil {
			return fault.Invalidf("certificate %d: x5c[0] is not a base64 DER certificate", i+1)
		}
		certs = append(certs, cert)
	}
	var requester string
	if caller, ok := identity.FromContext(c.ctx); ok {
		requester = caller.ObjectID
	}
	f, err := a.hsms.DownloadSecurityDomain(c.ctx, c.hsm.Name, requester, certs, *req.Required)
	if err != nil {
		return err
	}
	text, err := json.Marshal(f)
	if err != nil {
		return err
	}
	c.async("securitydomain/download/pending")
	return c.status(http.StatusAccepted, sdValue{Value: string(text)})
}

// async sets the long-running-operation headers Azure clients poll.
func (c *call) async(pending string) {
	c.w.Header().Set("Azure-AsyncOperation", c.base+"/"+pending)
	c.w.Header().Set("Retry-After", "1")
}

// sdStatus answers both pending endpoints: the download and upload are
// done when the call returns, so the status is the HSM's state. (Azure's
// CLI polls upload/pending after a download, so both say Success once the
// HSM is active.)
func (a *API) sdStatus(c *call) error {
	if c.hsm.State == domain.StateActive {
		return c.ok(sdStatus{Status: "Success", StatusDetails: "The security domain is in place; the HSM is activated."})
	}
	return c.ok(sdStatus{Status: "InProgress", StatusDetails: "The HSM is waiting for its security domain (state " + c.hsm.State + ")."})
}

func (a *API) sdTransferKey(c *call) error {
	cert, err := a.hsms.TransferKey(c.ctx, c.hsm.Name)
	if err != nil {
		return err
	}
	pub := cert.PublicKey.(*rsa.PublicKey)
	var sha [sha1.Size]byte // x5t names the certificate; it protects nothing (FIPS mode allows it)
	fips140.WithoutEnforcement(func() { sha = sha1.Sum(cert.Raw) })
	enc := base64.RawURLEncoding.EncodeToString
	return c.ok(transferKey{KeyFormat: "jwk", TransferKey: sdJWK{
		Kid: c.base + "/transfer_key", Kty: "RSA", KeyOps: []string{"encrypt"}, Algorithm: "RSA-OAEP-256",
		N: enc(pub.N.Bytes()), E: enc(big.NewInt(int64(pub.E)).Bytes()),
		X5c: []string{base64.StdEncoding.EncodeToString(cert.Raw)}, X5t: enc(sha[:]), X5tS256: securitydomain.Thumbprint(cert),
	}})
}

func (a *API) sdUpload(c *call) error {
	var req sdValue
	if err := c.readJSON(&req); err != nil {
		return err
	}
	var blob securitydomain.RestoreBlob
	if err := json.Unmarshal([]byte(req.Value), &blob); err != nil || blob.WrappedKey.EncKey == "" {
		return fault.Invalidf("value must be a restore blob: JSON text with EncData and WrappedKey")
	}
	if err := a.hsms.UploadSecurityDomain(c.ctx, c.hsm.Name, &blob); err != nil {
		return err
	}
	c.async("securitydomain/upload/pending")
	return c.status(http.StatusAccepted, sdStatus{Status: "Success", StatusDetails: "The security domain was restored; the HSM is activated."})
}

// downloadRequest is a security-domain download request on the wire
// (a Keyward extension). Certificates are the SHA-256 of each custodian
// certificate's DER, as `openssl x509 -outform der | sha256sum` prints
// them, so an approver can check what they approve.
type downloadRequest struct {
	ID           string   `json:"id"`
	Operation    string   `json:"operation"`
	Status       string   `json:"status"`
	Requester    string   `json:"requester"`
	Approver     string   `json:"approver"`
	Certificates []string `json:"certificates"`
	Quorum       int      `json:"quorum"`
	Created      string   `json:"created"`
	Approved     string   `json:"approved"`
	Completed    string   `json:"completed"`
}

func (a *API) wireRequest(d *domain.DownloadRequest) downloadRequest {
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	return downloadRequest{ID: d.ID, Operation: d.Operation, Status: d.Status(a.hsms.Now()), Requester: d.Requester, Approver: d.Approver,
		Certificates: d.Certificates, Quorum: d.Required, Created: stamp(d.Created), Approved: stamp(d.Approved), Completed: stamp(d.Completed)}
}

func (a *API) sdRequests(c *call) error {
	all, err := a.hsms.DownloadRequests(c.ctx, c.hsm.Name)
	if err != nil {
		return err
	}
	out := make([]downloadRequest, 0, len(all))
	for _, d := range all {
		out = append(out, a.wireRequest(d))
	}
	return c.ok(map[string]any{"value": out})
}

func (a *API) sdApprove(c *call) error {
	caller, _ := identity.FromContext(c.ctx)
	req, err := a.hsms.DownloadRequest(c.ctx, c.hsm, c.id)
	if err != nil {
		return err
	}
	// The table checked that the approver holds the download right; it
	// must also hold it independently of the requester: through an
	// assignment made before the request, by someone else.
	d, err := a.rbac.DecideApart(c.ctx, rbac.Request{HSM: c.hsm, Caller: caller, Action: rbac.SecurityDomainDownload, Scope: "/"},
		req.Created, req.Requester)
	if err != nil {
		return err
	}
	if !d.Allowed {
		return fault.Errorf(fault.Forbidden, "Forbidden", "the approver must hold the security domain download right through a role assignment "+
			"made before the request and by someone other than the requester")
	}
	approved, err := a.hsms.ApproveDownload(c.ctx, c.hsm, c.id, caller.ObjectID)
	if err != nil {
		return err
	}
	return c.ok(a.wireRequest(approved))
}

// setting is Managed HSM's account setting: values are strings, even for
// booleans.
type setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Type  string `json:"type"`
}

func (a *API) settingsList(c *call) error {
	all, err := a.hsms.Settings(c.ctx, c.hsm.Name)
	if err != nil {
		return err
	}
	out := []setting{}
	for name, v := range all {
		out = append(out, setting{Name: name, Value: v, Type: "boolean"})
	}
	return c.ok(map[string]any{"settings": out})
}

func (a *API) settingGet(c *call) error {
	v, err := a.hsms.Setting(c.ctx, c.hsm.Name, c.id)
	if err != nil {
		return err
	}
	return c.ok(setting{Name: domain.SettingDownloadApproval, Value: v, Type: "boolean"})
}

func (a *API) settingUpdate(c *call) error {
	var req struct {
		Value *string `json:"value"`
	}
	if err := c.readJSON(&req); err != nil {
		return err
	}
	if req.Value == nil {
		return fault.Invalidf("value is required")
	}
	var requester string
	if caller, ok := identity.FromContext(c.ctx); ok {
		requester = caller.ObjectID
	}
	if err := a.hsms.SetSetting(c.ctx, c.hsm, c.id, *req.Value, requester); err != nil {
		return err
	}
	return a.settingGet(c)
}
