package main

import (
	"os"
	"testing"
)

// The repository's Dockerfile must stay inside the subset mkimages knows, or e2e-node would not
// be proving the image that `docker build` makes.
func TestRepositoryDockerfile(t *testing.T) {
	text, err := os.ReadFile("../../../../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	_, stages, err := parseDockerfile(string(text))
	if err != nil {
		t.Fatal(err)
	}
	builder, final := stages[0], stages[len(stages)-1]
	if builder.name != "builder" {
		t.Fatalf("first stage is %q, want the builder", builder.name)
	}
	f, err := parseFinal(final, builder.name, map[string]string{"OUT": "/out"})
	if err != nil {
		t.Fatal(err)
	}
	ep := f.cfg.Entrypoint
	var binary string
	for _, c := range f.copies {
		if c.src == "/out/provider" {
			binary = c.dst
		}
	}
	if len(ep) != 1 || ep[0] != binary || binary == "" {
		t.Fatalf("ENTRYPOINT %q does not run the copied provider binary (%q)", ep, binary)
	}
	if f.cfg.User != "65532:65532" {
		t.Errorf("USER = %q, want 65532:65532 (the chart overrides it to root)", f.cfg.User)
	}
}

func TestUnknownInstructionFails(t *testing.T) {
	_, stages, err := parseDockerfile("FROM a AS builder\nRUN true\nFROM b\nHEALTHCHECK CMD x\nENTRYPOINT [\"/x\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseFinal(stages[1], "builder", nil); err == nil {
		t.Fatal("HEALTHCHECK in the final stage was accepted")
	}
}
