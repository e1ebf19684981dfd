package web

import (
	"regexp"
	"strconv"
	"strings"
)

// Words for people: the API's values (ISO 8601 durations, PIM actions and
// statuses, policy rule names) as the portal says them.

var isoDuration = regexp.MustCompile(`^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

// humanDuration turns "PT2H30M" into "2 hours 30 minutes"; anything else
// stays as it is.
func humanDuration(d string) string {
	m := isoDuration.FindStringSubmatch(d)
	if m == nil || d == "P" || d == "PT" {
		return d
	}
	var parts []string
	for i, unit := range []string{"year", "month", "week", "day", "hour", "minute", "second"} {
		if m[i+1] == "" {
			continue
		}
		n, _ := strconv.Atoi(m[i+1])
		if n != 1 {
			unit += "s"
		}
		parts = append(parts, strconv.Itoa(n)+" "+unit)
	}
	return strings.Join(parts, " ")
}

var apiWords = map[string]string{
	"selfActivate": "activate", "selfDeactivate": "deactivate", "selfExtend": "extend", "selfRenew": "renew",
	"adminAssign": "assigned by an administrator", "adminRemove": "removed by an administrator",
	"SelfActivate": "activate", "SelfDeactivate": "deactivate", "AdminAssign": "assigned by an administrator", "AdminRemove": "removed by an administrator",
	"PendingApproval": "pending approval", "PendingProvisioning": "pending", "Provisioned": "done", "Granted": "granted",
	"Revoked": "ended", "Denied": "denied", "Canceled": "cancelled", "Failed": "failed", "PendingRevocation": "ending",
}

// words says an API value in words.
func words(v string) string {
	if w, ok := apiWords[v]; ok {
		return w
	}
	return v
}

// ruleWords say what a failed policy rule asks of the requester.
var ruleWords = map[string]string{
	"MfaRule": "This access needs a sign-in with your authenticator's code. Sign in again and enter the code; " +
		"if you have no authenticator yet, enrol one (keyward account mfa enroll) first.",
	"JustificationRule": "This access needs a justification.",
	"TicketingRule":     "This access needs a ticket number.",
	"ExpirationRule":    "The duration is longer than this access allows: choose a shorter one.",
	"ApprovalRule":      "This access needs an approver, and the policy names none.",
}

// failedRules turns the API's "The following policy rules failed:
// [\"MfaRule\"]" into sentences; ok is false for any other message.
func failedRules(msg string) (out []string, mfa bool) {
	for rule, text := range ruleWords {
		if strings.Contains(msg, `"`+rule+`"`) {
			out = append(out, text)
			mfa = mfa || rule == "MfaRule"
		}
	}
	return out, mfa
}

// flashes are the lines a page may show after a change: a redirect names
// one, so no link can put words of its own in the console's mouth.
var flashes = map[string]string{
	"pending":     "Your request waits for approval.",
	"activated":   "Activated.",
	"deactivated": "Deactivated.",
	"cancelled":   "Your request is cancelled.",
	"approved":    "Approved.",
	"denied":      "Denied.",
	"policy":      "The policy is changed.",
}
