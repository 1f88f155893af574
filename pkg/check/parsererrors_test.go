package check

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// parserMessage is one error message that pkg/config can produce, as its format string.
type parserMessage struct {
	format string
	where  string // file:line in pkg/config
	re     *regexp.Regexp
}

// parserMessages reads every error message of pkg/config from its source: the literal formats of
// fmt.Errorf, errors.New and the parser's bad(...) calls, and of any other call whose first
// argument is a literal format that ends up in an error. A message built from something other than
// literals is reported as such, so that no message escapes this list unseen.
func parserMessages(t *testing.T) []parserMessage {
	t.Helper()
	files, err := filepath.Glob("../config/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no pkg/config sources: %v", err)
	}
	fset := token.NewFileSet()
	var out []parserMessage
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range file.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok {
				continue
			}
			ast.Inspect(fn, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 || !isErrorCall(call.Fun) {
					return true
				}
				where := fset.Position(call.Pos()).String()
				if id, ok := call.Args[0].(*ast.Ident); ok && id.Name == "format" {
					return true // a helper such as bad(format, args...): its calls are listed with their formats
				}
				format, ok := literal(call.Args[0])
				if !ok {
					site := fn.Name.Name + ": " + types.ExprString(call)
					if _, known := notLiteral[site]; !known {
						t.Errorf("%s: %s makes an error message that is not a literal format: cover it by a case, and add it to notLiteral", where, site)
					}
					return true
				}
				out = append(out, parserMessage{format: format, where: where, re: formatRE(format)})
				return true
			})
		}
	}
	return out
}

// notLiteral are the calls of pkg/config that make an error from something other than a literal
// format, and why each needs no case of its own.
var notLiteral = map[string]string{
	"decodeLenient: errors.New(msg)": "the YAML decoder's own message, shortened: the cases of YAML syntax and wrong types give it",
}

// isErrorCall reports calls that make an error from a format: fmt.Errorf, errors.New, and the
// parser's local bad(format, args...).
func isErrorCall(fun ast.Expr) bool {
	switch f := fun.(type) {
	case *ast.SelectorExpr:
		pkg, ok := f.X.(*ast.Ident)
		return ok && (pkg.Name == "fmt" && f.Sel.Name == "Errorf" || pkg.Name == "errors" && f.Sel.Name == "New")
	case *ast.Ident:
		return f.Name == "bad"
	}
	return false
}

// literal is the value of a string literal, or of literals joined with +.
func literal(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		x, ok1 := literal(e.X)
		y, ok2 := literal(e.Y)
		return x + y, ok1 && ok2
	case *ast.ParenExpr:
		return literal(e.X)
	}
	return "", false
}

var verbRE = regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z]`)

// formatRE matches what a format can print: its literal text, with anything for each verb.
func formatRE(format string) *regexp.Regexp {
	var b strings.Builder
	parts := strings.Split(format, "%%")
	for i, p := range parts {
		if i > 0 {
			b.WriteString("%")
		}
		locs := verbRE.FindAllStringIndex(p, -1)
		last := 0
		for _, l := range locs {
			b.WriteString(regexp.QuoteMeta(p[last:l[0]]))
			b.WriteString("(?s:.*)")
			last = l[1]
		}
		b.WriteString(regexp.QuoteMeta(p[last:]))
	}
	return regexp.MustCompile(b.String())
}
