package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
)

// Run starts a server with cfg, tells the operator where it is and how to
// sign in (never printing the secret), and serves until ctx is done.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	defer ln.Close()
	cfg.Listen = ln.Addr().String()
	s, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	b := s.Bootstrap()
	boot := filepath.Join(s.cfg.DataDir, BootstrapFile)
	fmt.Fprintf(out, "keyward is serving on %s\n", s.BaseURL())
	if cfg.AzureNames {
		fmt.Fprintf(out, "  Azure's names: %s, %s, %s, {hsm}.%s\n", AzureLoginHost, AzureManagementHost, AzureGraphHost, s.cfg.DNSSuffix)
		if _, port, _ := net.SplitHostPort(ln.Addr().String()); port != "443" {
			fmt.Fprintf(out, "  warning:       clients reach Azure's names on port 443, and this listener is on %s: forward 443 to it\n", port)
		}
	}
	fmt.Fprintf(out, "  node:          %s, listening on %s\n", s.cfg.NodeName, ln.Addr())
	fmt.Fprintf(out, "  tenant:        %s\n  CA:            %s\n  bootstrap:     %s (mode 0600; holds the admin's client secret)\n", b.TenantID, b.CAFile, boot)
	if b.HSMURI != "" {
		fmt.Fprintf(out, "  dev HSM:       %s\n", b.HSMURI)
	}
	fmt.Fprintf(out, "  web console:   %sconsole/ (for users: create one first, keyward ad user create)\n", s.AuthorityURL())
	// The secret goes on standard input: on a command line any local user
	// could read it from the process table.
	fmt.Fprintf(out, "Sign in with:\n  jq -r .clientSecret %s | keyward login --server %s --service-principal -u %s --tenant %s --ca-file %s\n",
		boot, s.AuthorityURL(), b.ClientID, b.TenantID, b.CAFile)
	return s.Serve(ctx, ln)
}
