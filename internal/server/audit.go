package server

import (
	"context"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/domain"
)

// record writes the audit record of a finished request. It reads only the
// request line, headers that identify the client, the status and what the
// pipeline learned (caller, operation, decision): never a body.
func (s *Server) record(r *http.Request, info *requestInfo, status int, start time.Time) {
	e := &audit.Event{
		TenantID:         s.dir.TenantID(),
		Time:             start.UTC().Format(audit.TimeLayout),
		OperationVersion: r.URL.Query().Get("api-version"),
		Category:         audit.Category,
		ResultType:       audit.ResultType(status),
		ResultSignature:  http.StatusText(status),
		HTTPStatusCode:   status,
		DurationMs:       time.Since(start).Milliseconds(),
		CallerIPAddress:  r.RemoteAddr,
		ClientInfo:       r.UserAgent(),
		CorrelationID:    r.Header.Get("x-ms-client-request-id"),
		RequestURI:       "https://" + r.Host + r.URL.RequestURI(),
		OperationName:    info.data.Operation,
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		e.CallerIPAddress = host
	}
	if c := info.caller; c != nil {
		e.Identity = &audit.Identity{Claim: audit.Claims{ObjectID: c.ObjectID, AppID: c.AppID, UPN: c.UPN, TenantID: c.TenantID}}
	}
	stream := audit.TenantStream
	if info.hsm != "" {
		stream = audit.StreamOf(info.hsm)
		e.ResourceID = s.hsmResourceID(r, info.hsm)
		e.Properties = audit.Properties{PoolType: "M-HSM", SKUFamily: "B", SKUName: "Standard_B1",
			Key: info.data.Key, Action: string(info.data.Action), Scope: info.data.Scope}
		if e.OperationName == "" {
			e.OperationName = "Unknown"
		}
		if d := info.data.Decision; d != nil {
			e.Properties.Authorization = &audit.Authorization{Decision: "Denied"}
			if d.Allowed {
				e.Properties.Authorization = &audit.Authorization{Decision: "Allowed", RoleAssignmentID: d.AssignmentID, RoleDefinitionID: d.RoleID}
			}
		}
	} else {
		e.ResourceID = "/TENANTS/" + strings.ToUpper(s.dir.TenantID())
		if e.OperationName = info.pattern; e.OperationName == "" {
			e.OperationName = r.Method + " (no route)"
		}
	}
	if err := s.audit.Append(stream, e); err != nil {
		// Ready refuses the next requests; this one already ran.
		s.log.Error("audit record lost", "err", err, "operation", e.OperationName, "status", status)
	}
}

// hsmResourceID is the ARM id of an HSM, upper-cased as Azure writes it in
// logs.
func (s *Server) hsmResourceID(r *http.Request, name string) string {
	if h, err := s.registry.Get(r.Context(), name); err == nil {
		return strings.ToUpper(s.hsmResourceIDOf(h))
	}
	return strings.ToUpper("/subscriptions/" + s.sub + "/resourceGroups/keyward/providers/Microsoft.KeyVault/managedHSMs/" + name)
}

// hsmResourceIDOf is the ARM id of an HSM.
func (s *Server) hsmResourceIDOf(h *domain.HSM) string {
	rg := h.ResourceGroup
	if rg == "" {
		rg = "keyward"
	}
	return "/subscriptions/" + s.sub + "/resourceGroups/" + rg + "/providers/Microsoft.KeyVault/managedHSMs/" + h.Name
}

// recordScheduled audits an action the rotation scheduler took.
func (s *Server) recordScheduled(ctx context.Context, h *domain.HSM, op, key, version string, err error) {
	status := http.StatusOK
	if err != nil {
		status = http.StatusInternalServerError
	}
	e := &audit.Event{TenantID: s.dir.TenantID(), Time: time.Now().UTC().Format(audit.TimeLayout), ResourceID: strings.ToUpper(s.hsmResourceIDOf(h)),
		OperationName: op, Category: audit.Category, ResultType: audit.ResultType(status), ResultSignature: http.StatusText(status),
		HTTPStatusCode: status, ClientInfo: "keyward rotation scheduler", CallerIPAddress: "127.0.0.1",
		RequestURI: strings.TrimSuffix(s.HSMURI(h.Name), "/") + "/keys/" + key + "/" + version,
		Properties: audit.Properties{PoolType: "M-HSM", SKUFamily: "B", SKUName: "Standard_B1", Key: key, Action: "scheduled"}}
	if err := s.audit.Append(audit.StreamOf(h.Name), e); err != nil {
		s.log.Error("audit record of a scheduled action lost", "err", err, "operation", op)
	}
}
