package pim

import (
	"time"

	"github.com/keyward/keyward/internal/events"
)

// Event types.
const (
	EventEligibilityCreated = events.PIMEligibilityCreated
	EventApprovalRequested  = events.PIMApprovalRequested
	EventApprovalDecided    = events.PIMApprovalDecided
	EventActivated          = events.PIMActivated
	EventDeactivated        = events.PIMDeactivated
	EventExpired            = events.PIMExpired
	EventAlertRaised        = events.PIMAlertRaised
)

func rfc(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func targetData(t Target, d *events.PIMData) {
	d.GroupID, d.AccessID, d.RoleDefinitionID, d.Scope = t.GroupID, t.AccessID, t.RoleDefinitionID, t.Scope
}

// event is a request's event.
func (s *Service) event(typ string, req *Request, decision string) events.Event {
	d := events.PIMData{PrincipalID: req.PrincipalID, RequestorID: req.RequestorID, RequestID: req.ID, Action: req.Action,
		Status: req.Status, Justification: req.Justification, Decision: decision}
	targetData(req.Target, &d)
	if typ == EventActivated {
		d.Start = rfc(req.Schedule.Start)
		if req.Schedule.Duration != "" {
			if dur, err := ParseDuration(req.Schedule.Duration); err == nil {
				d.End = rfc(req.Schedule.Start.Add(dur))
			}
		} else {
			d.End = rfc(req.Schedule.End)
		}
	}
	return events.NewPIM(typ, s.cfg.Source, req.ID, s.now(), d)
}

func (s *Service) scheduleEvent(typ string, sc *Schedule) events.Event {
	d := events.PIMData{PrincipalID: sc.PrincipalID, RequestID: sc.RequestID, Status: sc.Status, Start: rfc(sc.Start), End: rfc(sc.End)}
	targetData(sc.Target, &d)
	return events.NewPIM(typ, s.cfg.Source, sc.ID, s.now(), d)
}

func (s *Service) publish(evs []events.Event) {
	for _, e := range evs {
		s.cfg.Log.Info("pim "+e.Type, "subject", e.Subject, "principal", e.PIM.PrincipalID, "group", e.PIM.GroupID,
			"role", e.PIM.RoleDefinitionID, "scope", e.PIM.Scope, "status", e.PIM.Status)
		if s.cfg.Events != nil {
			s.cfg.Events.Publish(e)
		}
	}
}
