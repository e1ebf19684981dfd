package server

import (
	"context"
	"net/http"

	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/web"
)

// buildConsole makes the web console, a client of the server's own front
// door, registered as the token service's public client.
func (s *Server) buildConsole(subscription string) error {
	c, err := web.New(web.Config{Directory: s.dir, Tokens: s.tokens, API: s, Authority: s.urls.authority,
		Management: s.urls.management, Graph: s.urls.graph, HSMURI: s.HSMURI, Subscription: subscription,
		ARMResource: ARMResource, GraphResource: GraphResource, HSMResource: ManagedHSMResource,
		ReachableHSMs: s.reachableHSMs, NoteCaller: noteCaller, Log: s.log})
	if err != nil {
		return err
	}
	s.console = c
	return nil
}

// noteCaller names the console's signed-in user in the page request's
// audit record.
func noteCaller(r *http.Request, c *identity.Caller) {
	if info := infoOf(r); info != nil {
		info.caller = c
	}
}

// maxReachableHSMs bounds the HSMs the console's list asks about.
const maxReachableHSMs = 200

// reachableHSMs names the HSMs where c holds a data-plane role that reads
// something (keys or role assignments): the console lists them beside
// those the resource manager shows, so that an auditor with no
// control-plane role finds the HSM she audits. It reveals names only; what
// the pages show comes from the API.
func (s *Server) reachableHSMs(ctx context.Context, c *identity.Caller) ([]string, error) {
	hsms, err := s.registry.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	asked := 0
	for _, h := range hsms {
		if !h.Deleted.IsZero() {
			continue
		}
		if asked++; asked > maxReachableHSMs {
			break
		}
		for _, q := range []rbac.Request{{HSM: h, Caller: c, Action: rbac.KeysRead, Scope: "/keys"},
			{HSM: h, Caller: c, Action: rbac.RoleAssignmentsRead, Scope: "/"}} {
			d, err := s.rbac.Decide(ctx, q)
			if err != nil {
				return nil, err
			}
			if d.Allowed {
				out = append(out, h.Name)
				break
			}
		}
	}
	return out, nil
}
