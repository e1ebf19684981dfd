package events

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// PIM event types (Keyward's; Azure sends PIM notices by mail).
const (
	PIMEligibilityCreated = "Keyward.PIM.EligibilityCreated"
	PIMApprovalRequested  = "Keyward.PIM.ApprovalRequested"
	PIMApprovalDecided    = "Keyward.PIM.ApprovalDecided"
	PIMActivated          = "Keyward.PIM.Activated"
	PIMDeactivated        = "Keyward.PIM.Deactivated"
	PIMExpired            = "Keyward.PIM.Expired"
	PIMAlertRaised        = "Keyward.PIM.AlertRaised"
)

// PIMData is the payload of PIM events: who, what and why, never a secret.
type PIMData struct {
	PrincipalID      string `json:"principalId"`
	RequestorID      string `json:"requestorId,omitempty"`
	GroupID          string `json:"groupId,omitempty"`
	AccessID         string `json:"accessId,omitempty"`
	RoleDefinitionID string `json:"roleDefinitionId,omitempty"`
	Scope            string `json:"scope,omitempty"`
	RequestID        string `json:"requestId,omitempty"`
	Action           string `json:"action,omitempty"`
	Status           string `json:"status,omitempty"`
	Justification    string `json:"justification,omitempty"`
	// Decision is Approve, Deny or Canceled on ApprovalDecided.
	Decision string `json:"decision,omitempty"`
	// AlertType names the alert of AlertRaised.
	AlertType string `json:"alertType,omitempty"`
	// Start and End bound granted access (RFC 3339; "" when unbounded).
	Start string `json:"startDateTime,omitempty"`
	End   string `json:"endDateTime,omitempty"`
}

// NewPIM fills a PIM event's envelope.
func NewPIM(typ, source, subject string, at time.Time, d PIMData) Event {
	return Event{SpecVersion: "1.0", Type: typ, Source: source, ID: uuid.NewString(), Time: at.UTC().Format(time.RFC3339),
		Subject: subject, DataContentType: "application/json", PIM: &d}
}

// MarshalJSON writes the envelope with the key data, or the PIM data
// when the event has it.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event
	if e.PIM == nil {
		return json.Marshal(plain(e))
	}
	return json.Marshal(struct {
		plain
		Data *PIMData `json:"data"`
	}{plain(e), e.PIM})
}
