package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The provider's image is built from the repository's Dockerfile itself, not from a copy of its
// layout: the builder stage's RUN lines run on the host in the build context, and the final
// stage's COPY, USER, ENTRYPOINT and LABEL lines become the image. An instruction this subset
// does not know fails the build, so the Dockerfile cannot drift away from what e2e-node proves.

// instruction is one Dockerfile line, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, ARG, RUN, ...
	args string
}

// stage is a FROM and the instructions after it.
type stage struct {
	base, name string
	args       map[string]string // ARGs declared in the stage, with defaults
	body       []instruction
}

func parseDockerfile(text string) (global map[string]string, stages []*stage, err error) {
	global = map[string]string{}
	var ins []instruction
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		start := i
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		for strings.HasSuffix(l, `\`) && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, `\`) + " " + strings.TrimSpace(lines[i])
		}
		cmd, args, _ := strings.Cut(l, " ")
		ins = append(ins, instruction{line: start + 1, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
	}
	for _, in := range ins {
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			var from []string
			for _, w := range f {
				if !strings.HasPrefix(w, "--") {
					from = append(from, w)
				}
			}
			st := &stage{base: from[0], args: map[string]string{}}
			if len(from) == 3 && strings.EqualFold(from[1], "AS") {
				st.name = from[2]
			}
			stages = append(stages, st)
		case in.cmd == "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			if len(stages) == 0 {
				global[k] = v
			} else {
				st := stages[len(stages)-1]
				if v == "" {
					v = global[k]
				}
				st.args[k] = v
			}
		case len(stages) == 0:
			return nil, nil, fmt.Errorf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
		default:
			stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
		}
	}
	if len(stages) < 2 {
		return nil, nil, fmt.Errorf("Dockerfile: want a builder stage and a final stage, found %d stage(s)", len(stages))
	}
	return global, stages, nil
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

func expand(s string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		k := strings.Trim(m, "${}")
		if v, ok := vars[k]; ok {
			return v
		}
		return m
	})
}

// runBuilder runs the builder stage's RUN lines in contextDir with the stage's ARGs (overridden
// by set) in the environment. COPY into the stage's WORKDIR is the context itself.
func runBuilder(st *stage, contextDir string, set map[string]string) error {
	env := os.Environ()
	for k, v := range st.args {
		if o, ok := set[k]; ok {
			v = o
		}
		env = append(env, k+"="+v)
	}
	for _, in := range st.body {
		switch in.cmd {
		case "WORKDIR":
		case "COPY":
			if f := strings.Fields(in.args); strings.HasPrefix(f[0], "--") || (f[len(f)-1] != "./" && f[len(f)-1] != ".") {
				return fmt.Errorf("Dockerfile:%d: builder COPY %q: only copies of the context into the WORKDIR are known", in.line, in.args)
			}
		case "RUN":
			cmd := exec.Command("sh", "-euc", in.args)
			cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = contextDir, env, os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("Dockerfile:%d: RUN: %w", in.line, err)
			}
		default:
			return fmt.Errorf("Dockerfile:%d: %s in the builder stage is not supported by mkimages", in.line, in.cmd)
		}
	}
	return nil
}

// finalFiles is what the final stage copies out of the builder, and its config.
type finalStage struct {
	copies []copySpec // src is relative to the builder's OUT
	cfg    v1.Config
}

type copySpec struct{ src, dst string }

func parseFinal(st *stage, builder string, set map[string]string) (*finalStage, error) {
	vars := map[string]string{}
	for k, v := range st.args {
		vars[k] = v
	}
	for k, v := range set {
		vars[k] = v
	}
	f := &finalStage{cfg: v1.Config{Labels: map[string]string{}, WorkingDir: "/"}}
	for _, in := range st.body {
		args := expand(in.args, vars)
		switch in.cmd {
		case "LABEL":
			for _, m := range regexp.MustCompile(`([\w.-]+)="([^"]*)"`).FindAllStringSubmatch(args, -1) {
				f.cfg.Labels[m[1]] = m[2]
			}
		case "COPY":
			w := strings.Fields(args)
			if len(w) != 3 || w[0] != "--from="+builder {
				return nil, fmt.Errorf("Dockerfile:%d: final COPY %q: only COPY --from=%s <one source> <dest> is known", in.line, in.args, builder)
			}
			f.copies = append(f.copies, copySpec{src: w[1], dst: path.Clean(w[2])})
		case "USER":
			f.cfg.User = args
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(args), &f.cfg.Entrypoint); err != nil {
				return nil, fmt.Errorf("Dockerfile:%d: ENTRYPOINT must be the JSON form: %w", in.line, err)
			}
		case "WORKDIR":
			f.cfg.WorkingDir = args
		default:
			return nil, fmt.Errorf("Dockerfile:%d: %s in the final stage is not supported by mkimages", in.line, in.cmd)
		}
	}
	if len(f.cfg.Entrypoint) == 0 {
		return nil, fmt.Errorf("Dockerfile: the final stage has no ENTRYPOINT")
	}
	return f, nil
}
