// Package seedstory holds the test that runs the seed story's walkthrough
// with a broken role, to show that the script notices.
package seedstory

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBrokenRoleIsCaught grants the auditors Crypto User on top of Crypto
// Auditor: the walkthrough must stop where the auditor signs, naming the
// actor and the action. (scripts/test runs the walkthrough unbroken.)
func TestBrokenRoleIsCaught(t *testing.T) {
	cmd := exec.Command("./run")
	// The script's background processes end with it; WaitDelay is a guard
	// so that a leak fails the test rather than hanging it.
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(cmd.Environ(), "KEYWARD_STORY_BREAK=auditor-crypto-user")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the walkthrough passed with a broken role:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if want := "FAIL: erin was allowed to sign with app-signing, which the story forbids"; last != want {
		t.Fatalf("last line %q, want %q\n%s", last, want, out)
	}
	if !strings.Contains(string(out), "ALSO grants Crypto User to the App Auditors") {
		t.Fatalf("the break was not applied:\n%s", out)
	}
}
