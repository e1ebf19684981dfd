// Package cli implements the keyward command line. Client commands mirror
// the Azure CLI (az): the same command words and flags, JSON output shaped
// like az's, -o json|tsv|table and --query (JMESPath) on every command.
// They talk HTTPS to a Keyward server the way az talks to Azure; only
// "keyward serve" runs the server itself.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/spf13/cobra"
)

// env carries the process's streams and settings into commands, so tests
// can run commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	configDir      string
	global         globalFlags
}

// globalFlags are the flags az takes on every command. --only-show-errors
// and --verbose are accepted so that scripts run unchanged (keyward prints
// no warnings to silence, and logs nothing more); --debug prints an
// error's whole detail; --subscription must name the signed-in
// subscription, the only one there is.
type globalFlags struct {
	onlyShowErrors, debug, verbose bool
	subscription                   string
}

func (g *globalFlags) register(root *cobra.Command) {
	f := root.PersistentFlags()
	f.BoolVar(&g.onlyShowErrors, "only-show-errors", false, "only show errors (as az; keyward prints no warnings)")
	f.BoolVar(&g.debug, "debug", false, "print an error's whole detail (a failed sign-in's request and response)")
	f.BoolVar(&g.verbose, "verbose", false, "accepted for az scripts")
	f.StringVar(&g.subscription, "subscription", "", "the subscription (its id): the signed-in one, the only one there is")
}

// Main runs the command line and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, configDir: os.Getenv("KEYWARD_CONFIG_DIR")}
	if e.configDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		e.configDir = filepath.Join(home, ".keyward")
	}
	return run(ctx, e, args)
}

func run(ctx context.Context, e *env, args []string) int {
	root := newRoot(e)
	if err := unknownCommand(root, args); err != nil {
		fmt.Fprint(e.stderr, describeError(err, false))
		return exitUsage
	}
	root.SetArgs(azArgs(root, args))
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err.Error()} })
	helpOnGroups(root)
	confirmFlags(root)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprint(e.stderr, describeError(err, e.global.debug))
		return exitCode(err)
	}
	return 0
}

// Exit codes, as az's (knack's): 2 for a mistake in the command line, 3
// when what the command names does not exist, 1 for any other failure.
const (
	exitFailure  = 1
	exitUsage    = 2
	exitNotFound = 3
)

func exitCode(err error) int {
	var ue *usageError
	var ae *apiError
	var re *azcore.ResponseError
	switch {
	case errors.As(err, &ue) || cobraUsage(err):
		return exitUsage
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound,
		errors.As(err, &re) && re.StatusCode == http.StatusNotFound:
		return exitNotFound
	}
	return exitFailure
}

// cobraUsage tells the errors cobra itself returns for a bad command line
// (it has no types for them).
func cobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command ", "required flag(s) ", "accepts ", "requires at least ", "requires at most ",
		"if any flags in the group", "at least one of the flags in the group", "invalid argument "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// describeError writes an error as az does: a service's error as
// "(Code) Message" then its Code and Message lines, anything else on one
// line; always after "ERROR: ".
func describeError(err error, debug bool) string {
	if line, ok := signInFailure(err); ok {
		if debug {
			return "ERROR: " + line + "\n" + err.Error() + "\n"
		}
		return "ERROR: " + line + "\n"
	}
	var ae *apiError
	var re *azcore.ResponseError
	switch {
	case errors.As(err, &ae) && ae.Code != "":
	case errors.As(err, &re):
		ae = explain(re).(*apiError)
	default:
		ae = nil
	}
	if ae != nil {
		return fmt.Sprintf("ERROR: (%s) %s\nCode: %s\nMessage: %s\n", ae.Code, ae.Message, ae.Code, ae.Message) + apiHints[ae.Message]
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return "ERROR: " + ue.msg + "\n"
	}
	return "ERROR: " + err.Error() + "\n" + hintFor(err)
}

// confirmFlags gives every delete and purge az's --yes/-y (keyward asks
// no confirmation, so it changes nothing) and --no-wait (keyward's deletes
// are done when they answer), so that scripts with them run.
func confirmFlags(c *cobra.Command) {
	for _, sub := range c.Commands() {
		confirmFlags(sub)
	}
	if name := c.Name(); name != "delete" && name != "purge" {
		return
	}
	if c.Flags().Lookup("yes") == nil {
		short := "y"
		if c.Flags().ShorthandLookup("y") != nil {
			short = ""
		}
		c.Flags().BoolP("yes", short, false, "do not prompt for confirmation (keyward never prompts)")
	}
	if c.Flags().Lookup("no-wait") == nil {
		c.Flags().Bool("no-wait", false, "do not wait for the operation to finish (keyward's are done when they answer)")
	}
}

// helpOnGroups makes every command that only groups others (az's command
// groups) print its help and exit 2 when run alone, as az does.
func helpOnGroups(c *cobra.Command) {
	for _, sub := range c.Commands() {
		helpOnGroups(sub)
	}
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			cmd.Help()
			if len(args) > 0 {
				return &usageError{fmt.Sprintf("%q is not a command in '%s'", args[0], cmd.CommandPath())}
			}
			return &usageError{fmt.Sprintf("'%s' is a command group: give one of its commands", cmd.CommandPath())}
		}
	}
}

// usageError is a mistake in the command line itself.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "keyward",
		Short:         "Keyward: a self-hosted key-management service that speaks Azure Managed HSM",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	e.global.register(root)
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return emptyScope(cmd) }
	root.AddCommand(newServeCmd(e), newLoginCmd(e), newADCmd(e), newKeyvaultCmd(e), newPIMCmd(e), newStorageCmd(e), newMonitorCmd(e), newAuditCmd(e),
		newGroupCmd(e), newARMRoleCmd(e), newIdentityCmd(e), newAccountCmd(e), newLogoutCmd(e), newKMSPluginCmd(e), newBYOKCmd(e))
	return root
}

// unknownCommand is az's answer to a word that names no command of a
// group ("keyward keyvault keyy list"): cobra would report the first flag
// after it as unknown instead.
func unknownCommand(root *cobra.Command, args []string) error {
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == nil || cmd.Runnable() || !cmd.HasSubCommands() || len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
		return nil
	}
	if rest[0] == "help" {
		return nil
	}
	msg := fmt.Sprintf("'%s' is not in the '%s' command group. See '%s --help'.", rest[0], cmd.CommandPath(), cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's own default, which SuggestionsFor does not apply
	}
	if s := cmd.SuggestionsFor(rest[0]); len(s) > 0 {
		msg += fmt.Sprintf(" The most similar choice to '%s' is: %s", rest[0], strings.Join(s, ", "))
	}
	return usagef("%s", msg)
}

// emptyScope refuses a scope-like flag given an empty value: in a script
// that is an unset variable ("-g $RG"), and acting at the subscription, or
// on every assignment, instead would do more than asked.
func emptyScope(cmd *cobra.Command) error {
	for _, name := range []string{"resource-group", "scope", "scopes", "assignee", "assignee-object-id", "ids", "id", "hsm-name", "name"} {
		if f := cmd.Flags().Lookup(name); f != nil && f.Changed && strings.Trim(f.Value.String(), "[]\" ") == "" {
			return usagef("--%s is empty (an unset variable?)", name)
		}
	}
	return nil
}

// listAnnotation marks a flag that takes az's space-separated list.
const listAnnotation = "keyward/space-separated"

// azArgs rewrites a command line in az's forms into cobra's:
//   - space-separated lists, "--ops sign verify --tags a=b c=d", become
//     repeated flags, "--ops sign --ops verify --tags a=b --tags c=d", for
//     the flags marked with spaceSeparated;
//   - a three-state flag followed by its value, "--disabled true", becomes
//     "--disabled=true" (az's get_three_state_flag takes the flag alone or
//     with true/false; cobra would read the value as an argument).
func azArgs(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		return args
	}
	out := make([]string, 0, len(args))
	list, values := "", 0 // the list flag being read, and how many values it has
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			list, values = "", 0
			name, long := strings.CutPrefix(a, "--")
			if !long || strings.Contains(name, "=") {
				out = append(out, a)
				continue
			}
			f := cmd.Flags().Lookup(name)
			switch {
			case f == nil:
			case f.Annotations[listAnnotation] != nil:
				list = a
			case f.NoOptDefVal != "" && i+1 < len(args) && threeState(args[i+1]):
				a += "=" + strings.ToLower(args[i+1])
				i++
			}
			out = append(out, a)
			continue
		}
		if list != "" && values > 0 {
			out = append(out, list)
		}
		if list != "" {
			values++
		}
		out = append(out, a)
	}
	return out
}

// threeState tells the values az's three-state flags take.
func threeState(s string) bool {
	switch strings.ToLower(s) {
	case "true", "false":
		return true
	}
	return false
}
