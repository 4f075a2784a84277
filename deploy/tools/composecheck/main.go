// composecheck: `docker compose config` without Docker.
//
// It loads a Compose file with compose-go (github.com/compose-spec/compose-go/v2), the
// library the docker compose CLI itself uses for `docker compose config`, with the same
// steps: interpolation, validation against the compose-spec JSON schema, normalization,
// path resolution and the consistency checks (unknown services in depends_on, undeclared
// volumes / networks / configs / secrets, ...). On success it prints the normalized model
// (YAML, or JSON with -format json) like `docker compose config`; on failure it prints the
// loader's error and exits 1.
//
// -scale SERVICE=N adds the checks that `docker compose up --scale SERVICE=N` needs and that
// only fail at run time otherwise (N > 1): no container_name, no fixed published host port,
// no fixed hostname / mac_address / static IP (replicas would collide).
//
// Every service with a `build:` is checked too (build.go): the Dockerfile parses with
// BuildKit's frontend and passes its build checks, COPY/ADD sources exist in the context
// after .dockerignore, stage references resolve.
//
// -dockerfile PATH [-context DIR] checks one Dockerfile alone and prints a JSON summary of its
// stages (base, user, entrypoint, cmd, volumes, exposed ports, env).
//
// -schema prints the compose-spec JSON schema compose-go validates against (embedded in the
// module, github.com/compose-spec/compose-go/v2/schema/compose-spec.json) and exits.
//
// Usage: composecheck [-f FILE]... [-p NAME] [-project-directory DIR] [-scale SERVICE=N]... [-format yaml|json] [-q]
//
//	composecheck -dockerfile PATH [-context DIR]
//	composecheck -schema
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/types"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func scaleProblems(s types.ServiceConfig, n int) []string {
	if n <= 1 {
		return nil
	}
	var out []string
	if s.ContainerName != "" {
		out = append(out, fmt.Sprintf("container_name %q (container names must be unique)", s.ContainerName))
	}
	for _, p := range s.Ports {
		if p.Published == "" {
			continue
		}
		// A range ("8080-8090") can serve several replicas; a single port cannot.
		if _, err := strconv.Atoi(p.Published); err == nil {
			out = append(out, fmt.Sprintf("fixed published port %s:%d (only one replica can bind it)", p.Published, p.Target))
		}
	}
	if s.Hostname != "" {
		out = append(out, fmt.Sprintf("hostname %q (every replica would have the same hostname)", s.Hostname))
	}
	if s.MacAddress != "" {
		out = append(out, "mac_address is set")
	}
	for name, nw := range s.Networks {
		if nw != nil && (nw.Ipv4Address != "" || nw.Ipv6Address != "") {
			out = append(out, fmt.Sprintf("static IP on network %s", name))
		}
	}
	return out
}

func main() {
	var files, scales multi
	flag.Var(&files, "f", "compose file (repeatable; default: compose.yaml / docker-compose.yml of the working directory)")
	flag.Var(&scales, "scale", "SERVICE=N: check that SERVICE can run N replicas (repeatable)")
	name := flag.String("p", "", "project name (default: the file's `name:` or the directory name)")
	projectDir := flag.String("project-directory", "", "base of relative paths (default: the first file's directory)")
	format := flag.String("format", "yaml", "output format of the normalized model: yaml or json")
	quiet := flag.Bool("q", false, "only validate, print nothing")
	printSchema := flag.Bool("schema", false, "print the compose-spec JSON schema and exit")
	dockerfile := flag.String("dockerfile", "", "check this Dockerfile alone and print a JSON summary of its stages")
	contextDir := flag.String("context", "", "build context of -dockerfile (default: its directory)")
	flag.Parse()
	if *printSchema {
		fmt.Print(schema.Schema)
		return
	}
	if *dockerfile != "" {
		dir := *contextDir
		if dir == "" {
			dir = filepath.Dir(*dockerfile)
		}
		abs, err := filepath.Abs(*dockerfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(2)
		}
		stages, problems := checkBuild(dir, abs)
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "error:", p)
		}
		if len(problems) > 0 {
			os.Exit(1)
		}
		out, _ := json.MarshalIndent(stages, "", "  ")
		fmt.Println(string(out))
		return
	}
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: composecheck [-f FILE]... [-p NAME] [-scale SERVICE=N]... [-format yaml|json] [-q]")
		os.Exit(2)
	}

	opts := []cli.ProjectOptionsFn{
		cli.WithOsEnv,
		cli.WithDotEnv,
		cli.WithConfigFileEnv,
		cli.WithDefaultConfigPath,
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithDiscardEnvFile,
	}
	if *name != "" {
		opts = append(opts, cli.WithName(*name))
	}
	if *projectDir != "" {
		opts = append(opts, cli.WithWorkingDirectory(*projectDir))
	}
	po, err := cli.NewProjectOptions(files, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	project, err := po.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	if err := project.CheckContainerNameUnicity(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}

	var problems []string
	for _, sc := range scales {
		svc, nstr, ok := strings.Cut(sc, "=")
		n, err := strconv.Atoi(nstr)
		if !ok || err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "error: -scale %q: want SERVICE=N\n", sc)
			os.Exit(2)
		}
		s, err := project.GetService(svc)
		if err != nil {
			problems = append(problems, fmt.Sprintf("-scale %s: %v", sc, err))
			continue
		}
		for _, p := range scaleProblems(s, n) {
			problems = append(problems, fmt.Sprintf("services.%s cannot be scaled to %d: %s", svc, n, p))
		}
	}
	// Replica counts declared in the file itself must be runnable too.
	names := project.ServiceNames()
	sort.Strings(names)
	for _, svc := range names {
		s := project.Services[svc]
		for _, p := range scaleProblems(s, s.GetScale()) {
			problems = append(problems, fmt.Sprintf("services.%s declares %d replicas: %s", svc, s.GetScale(), p))
		}
	}
	// Build contexts of the services that build an image.
	builds := map[string]bool{}
	for _, svc := range names {
		b := project.Services[svc].Build
		if b == nil {
			continue
		}
		key := b.Context + "\x00" + b.Dockerfile
		if builds[key] || strings.Contains(b.Context, "://") {
			continue // checked already, or a remote (git) context
		}
		builds[key] = true
		df := b.Dockerfile
		if df == "" {
			df = "Dockerfile"
		}
		_, bp := checkBuild(b.Context, df)
		for _, p := range bp {
			problems = append(problems, fmt.Sprintf("services.%s.build: %s", svc, p))
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "error:", p)
		}
		os.Exit(1)
	}
	if *quiet {
		return
	}
	var out []byte
	switch *format {
	case "yaml":
		out, err = project.MarshalYAML()
	case "json":
		out, err = project.MarshalJSON()
	default:
		fmt.Fprintln(os.Stderr, "error: -format must be yaml or json")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
