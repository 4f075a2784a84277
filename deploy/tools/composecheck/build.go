package main

// Build-context checks: what `docker compose build` would fail on, without a Docker engine.
// The Dockerfile is parsed by BuildKit's own Dockerfile frontend packages (parser,
// instructions and the build-check linter: every `docker build --check` rule that runs at
// parse time); then every COPY / ADD source must exist in the build context after
// .dockerignore (BuildKit's pattern matcher), every COPY --from / RUN --mount from= must name
// an earlier stage (or an image), and mount types must be valid.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// StageSummary is what the final image of a stage is configured with (for tests).
type StageSummary struct {
	Name        string   `json:"name"`
	Base        string   `json:"base"`
	User        string   `json:"user"`
	Workdir     string   `json:"workdir"`
	Entrypoint  []string `json:"entrypoint"`
	Cmd         []string `json:"cmd"`
	Volumes     []string `json:"volumes"`
	Expose      []string `json:"expose"`
	Env         []string `json:"env"`
	Healthcheck bool     `json:"healthcheck"`
}

var mountTypes = map[string]bool{"bind": true, "cache": true, "tmpfs": true, "secret": true, "ssh": true}

// checkBuild validates one build: contextDir + dockerfile (relative to contextDir unless absolute).
func checkBuild(contextDir, dockerfile string) ([]StageSummary, []string) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(contextDir, dockerfile)
	}
	f, err := os.Open(dockerfile)
	if err != nil {
		return nil, []string{err.Error()}
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", dockerfile, err)}
	}
	for _, w := range res.Warnings {
		bad("%s: %s", dockerfile, w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		bad("%s:%d: build check %s: %s", dockerfile, line, rule, msg)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		return nil, append(problems, fmt.Sprintf("%s: %v", dockerfile, err))
	}

	ignored, err := dockerignore(contextDir, dockerfile)
	if err != nil {
		return nil, append(problems, err.Error())
	}
	earlier := map[string]bool{}
	fromOK := func(from string) bool {
		if earlier[strings.ToLower(from)] {
			return true
		}
		if n, err := strconv.Atoi(from); err == nil {
			return n >= 0 && n < len(earlier)
		}
		// Not a stage: an image reference (has a tag, digest or registry path).
		return strings.ContainsAny(from, ":/@")
	}

	var out []StageSummary
	for i, st := range stages {
		sum := StageSummary{Name: st.Name, Base: st.BaseName}
		for _, cmd := range st.Commands {
			switch c := cmd.(type) {
			case *instructions.CopyCommand:
				if c.From != "" {
					if !fromOK(c.From) {
						bad("%s: COPY --from=%s: no such earlier stage", dockerfile, c.From)
					}
					continue
				}
				for _, src := range c.SourcePaths {
					problems = append(problems, checkSource(contextDir, src, ignored, "COPY")...)
				}
			case *instructions.AddCommand:
				for _, src := range c.SourcePaths {
					if strings.Contains(src, "://") || strings.HasPrefix(src, "git@") {
						continue
					}
					problems = append(problems, checkSource(contextDir, src, ignored, "ADD")...)
				}
			case *instructions.RunCommand:
				// Parse the --mount options completely (BuildKit defers that to the build;
				// variables are left as they are).
				if err := c.Expand(func(w string) (string, error) { return w, nil }); err != nil {
					bad("%s: RUN: %v", dockerfile, err)
					continue
				}
				for _, m := range instructions.GetMounts(c) {
					if !mountTypes[string(m.Type)] {
						bad("%s: RUN --mount type=%s: unknown mount type", dockerfile, m.Type)
					}
					if m.From != "" && !fromOK(m.From) {
						bad("%s: RUN --mount from=%s: no such earlier stage", dockerfile, m.From)
					}
					if m.Type == "bind" && m.From == "" && m.Source != "" {
						problems = append(problems, checkSource(contextDir, m.Source, ignored, "RUN --mount")...)
					}
				}
			case *instructions.UserCommand:
				sum.User = c.User
			case *instructions.WorkdirCommand:
				sum.Workdir = c.Path
			case *instructions.EntrypointCommand:
				sum.Entrypoint = append([]string{}, c.CmdLine...)
				if c.PrependShell {
					bad("%s: ENTRYPOINT in shell form: signals do not reach the process (use JSON form)", dockerfile)
				}
			case *instructions.CmdCommand:
				sum.Cmd = append([]string{}, c.CmdLine...)
			case *instructions.VolumeCommand:
				sum.Volumes = append(sum.Volumes, c.Volumes...)
			case *instructions.ExposeCommand:
				sum.Expose = append(sum.Expose, c.Ports...)
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					sum.Env = append(sum.Env, kv.Key+"="+kv.Value)
				}
			case *instructions.HealthCheckCommand:
				sum.Healthcheck = c.Health != nil && len(c.Health.Test) > 0 && c.Health.Test[0] != "NONE"
			}
		}
		if st.Name != "" {
			earlier[strings.ToLower(st.Name)] = true
		} else {
			earlier[strconv.Itoa(i)] = true
		}
		out = append(out, sum)
	}
	return out, problems
}

// dockerignore returns the matcher of the context's .dockerignore (or <Dockerfile>.dockerignore).
func dockerignore(contextDir, dockerfile string) (*patternmatcher.PatternMatcher, error) {
	var patterns []string
	for _, p := range []string{dockerfile + ".dockerignore", filepath.Join(contextDir, ".dockerignore")} {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", p, err)
		}
		break
	}
	return patternmatcher.New(patterns)
}

// checkSource: a COPY source (a path or glob relative to the context) must match at least
// one file of the context that .dockerignore does not exclude.
func checkSource(contextDir, src string, ignored *patternmatcher.PatternMatcher, what string) []string {
	rel := filepath.Clean(strings.TrimPrefix(src, "/"))
	if strings.HasPrefix(rel, "..") {
		return []string{fmt.Sprintf("%s %s: outside the build context", what, src)}
	}
	matches, err := filepath.Glob(filepath.Join(contextDir, rel))
	if err != nil || len(matches) == 0 {
		return []string{fmt.Sprintf("%s %s: not found in the build context %s", what, src, contextDir)}
	}
	for _, m := range matches {
		r, _ := filepath.Rel(contextDir, m)
		if r == "." {
			return nil // the whole context
		}
		excluded, err := ignored.MatchesOrParentMatches(filepath.ToSlash(r))
		if err != nil {
			return []string{fmt.Sprintf("%s %s: %v", what, src, err)}
		}
		if !excluded {
			// A directory must keep at least one file after .dockerignore.
			if st, err := os.Stat(m); err == nil && st.IsDir() && !keepsAFile(contextDir, m, ignored) {
				continue
			}
			return nil
		}
	}
	return []string{fmt.Sprintf("%s %s: excluded from the build context by .dockerignore", what, src)}
}

func keepsAFile(contextDir, dir string, ignored *patternmatcher.PatternMatcher) bool {
	found := false
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || found || d.IsDir() {
			return nil
		}
		r, _ := filepath.Rel(contextDir, p)
		if ex, err := ignored.MatchesOrParentMatches(filepath.ToSlash(r)); err == nil && !ex {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found
}
