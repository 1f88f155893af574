package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the report as one indented JSON document.
func WriteJSON(w io.Writer, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// WriteText writes the report for a terminal: problems as file:line: message, then per
// SecretProviderClass what the provider will do and what Azure must have, and the live mount.
func WriteText(w io.Writer, rep *Report) error {
	for _, p := range rep.Problems {
		fmt.Fprintln(w, p)
	}
	for i, r := range rep.Classes {
		if i > 0 || len(rep.Problems) > 0 {
			fmt.Fprintln(w)
		}
		writeResult(w, r)
	}
	if len(rep.Classes) > 0 || len(rep.Problems) > 0 {
		fmt.Fprintln(w)
	}
	_, err := fmt.Fprintln(w, summary(rep))
	return err
}

func writeResult(w io.Writer, r *Result) {
	where := r.File
	if r.Line > 0 {
		where = fmt.Sprintf("%s:%d", r.File, r.Line)
	}
	if where != "" {
		where += ": "
	}
	name := r.Name
	if r.Namespace != "" {
		name = r.Namespace + "/" + r.Name
	}
	head := fmt.Sprintf("== %sSecretProviderClass %s", where, name)
	if r.Pod != "" {
		head += ", mounted by pod " + r.Pod
	}
	fmt.Fprintf(w, "%s: %s\n", head, verdict(r))
	for _, p := range r.Problems {
		fmt.Fprintln(w, p)
	}
	if r.Explain == nil { // else the explanation shows them
		for _, warning := range r.Warnings {
			fmt.Fprintln(w, "warning:", warning)
		}
	}
	if e := r.Explain; e != nil {
		writeExplanation(w, r, e)
	}
	if r.Live != nil {
		writeLive(w, r.Live)
	}
}

func verdict(r *Result) string {
	switch {
	case len(r.Problems) == 1:
		return "1 problem"
	case len(r.Problems) > 1:
		return fmt.Sprintf("%d problems", len(r.Problems))
	case r.Live != nil && !r.Live.OK:
		return "valid, but the live mount failed"
	case r.Live != nil:
		return "OK, mounted"
	}
	return "OK"
}

func writeExplanation(w io.Writer, r *Result, e *Explanation) {
	tw := newTable(w)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, args...)) }
	vault := e.Vault
	if e.VaultURL != "" {
		vault += " " + e.VaultURL
	}
	row("vault", "%s (%s, tenant %s)", vault, e.Cloud, e.TenantID)
	row("identity", "%s", e.Identity.Identity)
	if e.Identity.Rule > 0 {
		row("why", "rule %d of %d of the identity precedence: %s → %s", e.Identity.Rule, e.Identity.Rules, e.Identity.When, e.Identity.Then)
	}
	assumed := ""
	if r.Assumed {
		assumed = " (assumed: see --namespace and --service-account)"
	}
	row("pods", "service account %s/%s%s", r.Namespace, r.ServiceAccount, assumed)
	for _, n := range e.Needs {
		row(n.What, "%s", n.Detail)
	}
	for _, warning := range r.Warnings {
		row("warning", "%s", warning)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintf(tw, "  OBJECT\tFILE\tMODE\tRBAC ROLE (vault %s)\tOR ACCESS POLICY\n", e.Vault)
	for _, o := range e.Objects {
		var paths []string
		mode := ""
		for _, f := range o.Files {
			paths = append(paths, f.Path)
			mode = f.Mode
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", o.Object, pathList(paths), mode, o.Role, o.Permissions)
	}
	tw.Flush()
}

// table is a tabwriter whose lines lose the padding of their empty last cells when flushed.
type table struct {
	out io.Writer
	buf strings.Builder
	*tabwriter.Writer
}

func newTable(w io.Writer) *table {
	t := &table{out: w}
	t.Writer = tabwriter.NewWriter(&t.buf, 0, 0, 2, ' ', 0)
	return t
}

func (t *table) Flush() {
	_ = t.Writer.Flush()
	for _, line := range strings.SplitAfter(t.buf.String(), "\n") {
		if line != "" {
			fmt.Fprintln(t.out, strings.TrimRight(line, " \n"))
		}
	}
	t.buf.Reset()
}

// pathList shortens a version history's files to the first and the last.
func pathList(paths []string) string {
	if len(paths) > 2 {
		return paths[0] + " .. " + paths[len(paths)-1]
	}
	return strings.Join(paths, ", ")
}

func writeLive(w io.Writer, l *Live) {
	fmt.Fprintln(w)
	if l.As != "" {
		fmt.Fprintf(w, "  live mount as %s\n", l.As)
	}
	if read(l) {
		tw := newTable(w)
		fmt.Fprintln(tw, "  OBJECT\tRESULT\tFILE\tMODE\tSIZE\tVERSION\tCONTENT TYPE\tCONTENT")
		for _, o := range l.Objects {
			if len(o.Files) == 0 {
				fmt.Fprintf(tw, "  %s\t%s\t\t\t\t\t\t\n", o.Object, o.Status)
			}
			for i, f := range o.Files {
				object, status := o.Object, o.Status
				if i > 0 {
					object, status = "", ""
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", object, status, f.Path, f.Mode, f.Size, dash(f.Version), dash(f.ContentType), f.Content)
			}
		}
		tw.Flush()
	}
	for _, o := range l.Objects {
		if o.Error != "" {
			fmt.Fprintf(w, "  %s: %s\n", o.Object, o.Error)
		}
	}
	for _, warning := range l.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warning)
	}
	switch {
	case l.MountError != "" && !hasObjectErrors(l):
		fmt.Fprintf(w, "  the mount fails: %s\n", l.MountError)
	case l.Wrote != "":
		fmt.Fprintf(w, "  wrote the files to %s\n", l.Wrote)
	}
}

// read reports whether the mount read any object (it may stop before: a token refused).
func read(l *Live) bool {
	for _, o := range l.Objects {
		if o.Status != "NOT READ" {
			return true
		}
	}
	return false
}

func hasObjectErrors(l *Live) bool {
	for _, o := range l.Objects {
		if o.Error != "" {
			return true
		}
	}
	return false
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func summary(rep *Report) string {
	ok := 0
	for _, r := range rep.Classes {
		if r.OK {
			ok++
		}
	}
	s := fmt.Sprintf("%d SecretProviderClass%s checked: %d OK", len(rep.Classes), pluralES(len(rep.Classes)), ok)
	if bad := len(rep.Classes) - ok; bad > 0 {
		s += fmt.Sprintf(", %d with problems", bad)
	}
	if len(rep.Problems) > 0 {
		s += fmt.Sprintf("; %d other problem%s", len(rep.Problems), plural(len(rep.Problems)))
	}
	if len(rep.Skipped) > 0 {
		s += "; skipped " + strings.Join(rep.Skipped, ", ")
	}
	return s
}

func pluralES(n int) string {
	if n == 1 {
		return ""
	}
	return "es"
}
