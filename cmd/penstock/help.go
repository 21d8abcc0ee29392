package main

import (
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/penstock-mta/penstock/dkim"
)

// usage lists the commands.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: penstock <command> [arguments] [flags]")
	fmt.Fprintln(w)
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'penstock help <command>' (or 'penstock <command> -h') for what a command does, its flags and an example.")
}

// describe writes a command's help: usage line, what it does, example.
func describe(w io.Writer, name string, c command) {
	line := "usage: penstock " + name
	if c.args != "" {
		line += " " + c.args
	}
	fmt.Fprintln(w, line+" [flags]")
	fmt.Fprintln(w)
	about := c.about
	if about == "" {
		about = c.summary
	}
	fmt.Fprintln(w, about)
	if c.example != "" {
		fmt.Fprintln(w, "\nExample:")
		for _, l := range strings.Split(c.example, "\n") {
			fmt.Fprintln(w, "  "+l)
		}
	}
}

func cmdHelp(args []string, stdout, stderr io.Writer) int {
	switch len(args) {
	case 0:
		usage(stdout)
		return 0
	case 1:
	default:
		fmt.Fprintln(stderr, "usage: penstock help [COMMAND]")
		return 2
	}
	c, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "penstock help: unknown command %q\n", args[0])
		if s := suggest(args[0]); s != "" {
			fmt.Fprintf(stderr, "Did you mean 'penstock help %s'?\n", s)
		}
		return 2
	}
	if args[0] == "help" || args[0] == "version" {
		describe(stdout, args[0], c)
		return 0
	}
	// The command's own -h adds its flags to the description.
	c.run([]string{"-h"}, stdout, stdout)
	return 0
}

// newFlags makes a command's flag set whose -h prints the command's help
// and its flags.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		c := commands()[name]
		describe(fs.Output(), name, c)
		fmt.Fprintln(fs.Output(), "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// positional parses flags anywhere among the arguments and wants between
// min and max positional arguments (max < 0: any number). A wrong count
// is an error, never silently ignored.
func positional(fs *flag.FlagSet, args []string, min, max int) ([]string, bool) {
	pos, ok := parseArgs(fs, args)
	if !ok {
		return nil, false
	}
	if len(pos) < min || (max >= 0 && len(pos) > max) {
		switch {
		case len(pos) < min:
			fmt.Fprintf(fs.Output(), "penstock %s: missing argument\n", fs.Name())
		case max == 0:
			fmt.Fprintf(fs.Output(), "penstock %s: unexpected argument %q\n", fs.Name(), pos[0])
		default:
			fmt.Fprintf(fs.Output(), "penstock %s: unexpected argument %q\n", fs.Name(), pos[max])
		}
		c := commands()[fs.Name()]
		line := "usage: penstock " + fs.Name()
		if c.args != "" {
			line += " " + c.args
		}
		fmt.Fprintln(fs.Output(), line+" [flags]   (penstock help "+fs.Name()+")")
		return nil, false
	}
	return pos, true
}

// suggest returns the command closest to a mistyped one, or "".
func suggest(typed string) string {
	best, bestD := "", 3 // at most two edits away
	for name := range commands() {
		d := editDistance(strings.ToLower(typed), name)
		if strings.HasPrefix(name, strings.ToLower(typed)) && len(typed) >= 2 {
			d = 1
		}
		if d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance (one row of the table).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	row := make([]int, len(rb)+1)
	for j := range row {
		row[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		prev := row[0]
		row[0] = i
		for j := 1; j <= len(rb); j++ {
			cur := row[j]
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			row[j] = min(row[j]+1, row[j-1]+1, prev+cost)
			prev = cur
		}
	}
	return row[len(rb)]
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", stderr)
	if _, ok := positional(fs, args, 0, 0); !ok {
		return 2
	}
	version, revision, modified, goVersion := "(devel)", "", false, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	line := "penstock " + version
	if revision != "" {
		line += " (" + revision
		if modified {
			line += ", modified"
		}
		line += ")"
	}
	if goVersion != "" {
		line += " " + goVersion
	}
	fmt.Fprintln(stdout, line)
	fmt.Fprintln(stdout, "dkim rsa signer: "+dkim.RSAImplementation())
	return 0
}
