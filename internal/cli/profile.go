package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// profile is what "keyward login" saves: where the server is, how to trust
// it, and the credential to sign in with: a service principal's secret (as
// az keeps service_principal_entries.json) or, for a user, the refresh
// token of the sign-in, never the password (as az keeps MSAL's token
// cache). It holds a secret, so the file is written with mode 0600.
type profile struct {
	Server       string `json:"server"`
	TenantID     string `json:"tenantId"`
	Subscription string `json:"subscription,omitempty"`
	CAFile       string `json:"caFile,omitempty"`
	// MHSMDNS is the HSM DNS suffix with port, such as ".mhsm.localhost:8443".
	MHSMDNS string `json:"mhsmDns"`
	// Management and Graph are the resource manager's and the directory's
	// URLs, from the server's metadata, when they are not Server (a server
	// at Azure's names: https://management.azure.com/ and
	// https://graph.microsoft.com/).
	Management string `json:"management,omitempty"`
	Graph      string `json:"graph,omitempty"`
	// Kind is "servicePrincipal" or "user".
	Kind     string `json:"kind"`
	Username string `json:"username"`
	// Secret is a service principal's client secret; users have none.
	Secret string `json:"secret,omitempty"`
	// RefreshToken is a user's: it gets access tokens until it expires
	// (24 hours after the sign-in) or is revoked ('keyward logout').
	RefreshToken string `json:"refreshToken,omitempty"`
	// Certificate is the path of a PEM file with a service principal's
	// certificate and private key, used instead of Secret.
	Certificate string `json:"certificate,omitempty"`
}

const profileFile = "profile.json"

// managementURL is the resource manager's URL, ending in "/".
func (p *profile) managementURL() string {
	if p.Management != "" {
		return p.Management
	}
	return p.Server
}

// graphURL is the directory's URL, ending in "/".
func (p *profile) graphURL() string {
	if p.Graph != "" {
		return p.Graph
	}
	return p.Server
}

func (e *env) loadProfile() (*profile, error) {
	b, err := os.ReadFile(filepath.Join(e.configDir, profileFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usagef("not logged in: run 'keyward login --server URL --service-principal -u APPID -p SECRET --tenant TENANT'")
	}
	if err != nil {
		return nil, fmt.Errorf("reading profile: %w", err)
	}
	var p profile
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("reading profile %s: %w", filepath.Join(e.configDir, profileFile), err)
	}
	if p.Kind == "user" && p.RefreshToken == "" {
		return nil, usagef("the saved login is of an older keyward, which kept the password: run 'keyward login' again")
	}
	return &p, nil
}

func (e *env) saveProfile(p *profile) error {
	if p.Kind == "user" {
		p.Secret = "" // a user's password is never kept
	}
	if err := os.MkdirAll(e.configDir, 0o700); err != nil {
		return fmt.Errorf("saving profile: %w", err)
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(e.configDir, profileFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("saving profile: %w", err)
	}
	return os.Rename(tmp, path)
}
