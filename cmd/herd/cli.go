package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"
)

// command is one subcommand. Files of this package register theirs in init.
type command struct {
	name    string // "up", or "sources create" for a subcommand of a group
	summary string // one line for the command list
	usage   string // arguments after the name, e.g. "NAME [flags]"
	help    string // paragraphs shown by herd help NAME
	flags   func(fs *flag.FlagSet) any
	run     func(ctx context.Context, e *env, args []string) error
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("herd: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// env is what every command receives: output streams and a logger.
type env struct {
	stdout, stderr io.Writer
	log            *slog.Logger
	// configured: a flag or HERD_* variable other than --data-dir gave
	// the command a setting (herd doctor then checks those, not herd up's).
	configured bool
}

// usageError makes herd exit with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		printCommands(stdout)
		return 0
	}
	if args[0] == "help" {
		if len(args) == 1 {
			printCommands(stdout)
			return 0
		}
		c, _ := lookup(args[1:])
		if c == nil {
			fmt.Fprintf(stderr, "herd: unknown command %q; run 'herd help' for the list\n", strings.Join(args[1:], " "))
			return 2
		}
		fs := newFlagSet(c)
		fs.SetOutput(stdout)
		fs.Usage()
		return 0
	}
	c, rest := lookup(args)
	if c == nil {
		fmt.Fprintf(stderr, "herd: unknown command %q; run 'herd help' for the list\n", strings.Join(args, " "))
		return 2
	}
	fs := newFlagSet(c)
	// --help goes to stdout once: the flag package would print it to the
	// flag set's output (stderr) before saying help was asked for.
	for _, a := range rest {
		if a == "--" {
			break
		}
		if a == "-h" || a == "--h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
	}
	fs.SetOutput(stderr)
	// Flags may follow positional arguments (herd sources create NAME --kind server).
	var positional []string
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(stdout)
				fs.Usage()
				return 0
			}
			return 2
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		positional = append(positional, rest[0])
		rest = rest[1:]
	}
	cmdline := map[string]string{}
	fs.Visit(func(f *flag.Flag) { cmdline[f.Name] = f.Value.String() })
	if err := applyEnv(fs); err != nil {
		fmt.Fprintf(stderr, "herd %s: %v\n", c.name, err)
		return 2
	}
	configured := false
	fs.Visit(func(f *flag.Flag) { configured = configured || (f.Name != "data-dir" && f.Name != "strict") })
	if c.name != "up" {
		locate(fs, stderr)
	}
	e := &env{stdout: stdout, stderr: stderr, log: newLogger(stderr), configured: configured}
	warnSecretFlags(e.log, c.name, cmdline)
	if err := c.run(ctx, e, positional); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "herd %s: %v (see 'herd help %s')\n", c.name, err, c.name)
			return 2
		}
		fmt.Fprintf(stderr, "herd %s: %s\n", c.name, oneLine(err.Error()))
		return 1
	}
	return 0
}

// lookup finds the longest registered command name that prefixes args.
func lookup(args []string) (*command, []string) {
	for n := min(len(args), 3); n > 0; n-- {
		if c, ok := commands[strings.Join(args[:n], " ")]; ok {
			return c, args[n:]
		}
	}
	return nil, nil
}

// flagSets keeps the parsed configuration struct of each command so that run
// functions can read it.
var parsed = map[string]any{}

func newFlagSet(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("herd "+c.name, flag.ContinueOnError)
	if c.flags != nil {
		parsed[c.name] = c.flags(fs)
	}
	if c.name != "up" {
		addDataDir(fs)
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: herd %s %s\n\n%s\n", c.name, c.usage, c.summary)
		if c.help != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
		}
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(w, "\nFlags (each also read from the environment variable shown, if any):\n")
			fs.VisitAll(func(f *flag.Flag) {
				def := ""
				if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "[]" {
					def = fmt.Sprintf(" (default %s)", f.DefValue)
				}
				if _, alias := f.Value.(aliasValue); alias {
					fmt.Fprintf(w, "  --%s\t%s%s\n", f.Name, f.Usage, def)
					return
				}
				fmt.Fprintf(w, "  --%s\t%s%s  [$%s]\n", f.Name, f.Usage, def, envName(f.Name))
			})
		}
	}
	return fs
}

// config returns the configuration struct that c.flags returned.
func config[T any](name string) T { return parsed[name].(T) }

func envName(flagName string) string {
	return "HERD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its HERD_
// environment variable. DATABASE_URL is honoured too, as every Postgres tool does.
func applyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if _, alias := f.Value.(aliasValue); given[f.Name] || alias || err != nil {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok && f.Name == "database-url" {
			v, ok = os.LookupEnv("DATABASE_URL")
		}
		if ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("$%s=%q: %v", envName(f.Name), redact(v), e)
			}
		}
	})
	return err
}

func printCommands(w io.Writer) {
	fmt.Fprintf(w, "herd collects events and loads company data into Postgres.\n\nUsage: herd COMMAND [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-22s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'herd help COMMAND' for its flags. Every flag can be set by a HERD_* environment variable.\n")
}

func newLogger(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("HERD_LOG_LEVEL") == "debug" {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if os.Getenv("HERD_LOG_FORMAT") == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// durationFlag is a small convenience for flags in seconds or Go durations.
func durationFlag(fs *flag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	fs.DurationVar(p, name, def, usage)
}
