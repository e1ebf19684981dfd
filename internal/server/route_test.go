package server

import "testing"

// TestRoute is the front door's routing table: which surface, audience and
// HSM each host and path reach.
func TestRoute(t *testing.T) {
	s := &Server{cfg: Config{DNSSuffix: "mhsm.localhost", Dev: true}, listenHost: "127.0.0.1", routes: routeTable()}
	prod := &Server{cfg: Config{DNSSuffix: "mhsm.localhost"}, listenHost: "127.0.0.1", routes: routeTable()}
	for _, c := range []struct {
		srv        *Server
		host, path string
		want       destination
	}{
		{s, "contoso.mhsm.localhost:8443", "/keys", destination{surfaceDataPlane, ManagedHSMResource, "contoso", false}},
		{s, "CONTOSO.mhsm.localhost.:8443", "/keys", destination{surfaceDataPlane, ManagedHSMResource, "contoso", false}},
		{s, "a.b.mhsm.localhost:8443", "/keys", destination{}},
		{s, "mhsm.localhost:8443", "/keys", destination{surface: surfaceOpen}},
		{s, "127.0.0.1:8443", "/keys/k/sign", destination{surfaceDataPlane, ManagedHSMResource, DevHSMName, true}},
		{s, "localhost:8443", "/providers/Microsoft.Authorization/roleAssignments", destination{surfaceDataPlane, ManagedHSMResource, DevHSMName, true}},
		{s, "127.0.0.1:8443", "/subscriptions/x/providers/Microsoft.Authorization/roleAssignments", destination{surfaceARM, ARMResource, "", false}},
		{s, "evil.example:8443", "/keys", destination{surface: surfaceOpen}},
		{prod, "127.0.0.1:8443", "/keys", destination{surface: surfaceOpen}},
		{s, "127.0.0.1:8443", "/SUBSCRIPTIONS/x/resourcegroups", destination{surfaceARM, ARMResource, "", false}},
		{s, "127.0.0.1:8443", "/v1.0/users", destination{surfaceGraph, GraphResource, "", false}},
		{s, "127.0.0.1:8443", "/beta/identityGovernance/roleManagementAlerts/alerts", destination{surfaceGraph, GraphResource, "", false}},
		{s, "127.0.0.1:8443", "/providers/Microsoft.Authorization/roleEligibilityScheduleInstances", destination{surfaceARM, ARMResource, "", false}},
		{prod, "127.0.0.1:8443", "/providers/microsoft.authorization/roleAssignmentApprovals/x", destination{surfaceARM, ARMResource, "", false}},
		{s, "127.0.0.1:8443", "/tenant/oauth2/v2.0/token", destination{surface: surfaceOpen}},
		{s, "127.0.0.1:8443", "/metadata/endpoints", destination{surface: surfaceOpen}},
	} {
		if got := c.srv.route(c.host, c.path); got != c.want {
			t.Errorf("%s %s: %+v, want %+v", c.host, c.path, got, c.want)
		}
	}
}

func TestCleanPathAndWithPath(t *testing.T) {
	for in, want := range map[string]string{"//providers//x/": "/providers/x", "/keys/k/": "/keys/k", "/": "/", "": ""} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}
