// k8svalidate: offline, strict validation of Kubernetes manifests (no cluster, no network).
//
// Every YAML document is decoded into the real Go types of the Kubernetes API
// (k8s.io/api) and of the Prometheus operator (ServiceMonitor, PodMonitor,
// PrometheusRule) with STRICT decoding: an unknown field, a duplicate key or a
// value of the wrong type is an error, as it is for `kubectl apply
// --validate=strict` against a server. A kind the tool has no type for is an
// error too (nothing passes unchecked).
//
// Then it runs the semantic checks an API server or a controller would otherwise
// report only at deploy time, across all the given files together:
//
//   - names are DNS-1123 (Services: DNS-1035 labels), label keys and values valid,
//     no metadata.namespace (the manifests are namespace-agnostic; -allow-namespace);
//   - Deployment / StatefulSet / DaemonSet: the selector matches the pod template's
//     labels; container names unique; port names valid and unique; every probe's port
//     (by name or number) is a container port and its HTTP path starts with "/"; every
//     volumeMount names a volume; ConfigMap / Secret volumes and envFrom name ConfigMaps
//     of the set (Secrets may live outside it) and ConfigMap items name existing keys;
//     resource requests do not exceed limits; downward-API fieldPaths are supported ones;
//     runAsNonRoot is not combined with runAsUser 0; StatefulSet volumeClaimTemplates count
//     as volumes and have accessModes and a storage request, spec.serviceName is a Service;
//   - Service: the selector selects some workload's pods; a named targetPort is a
//     container port of those pods; port names unique;
//   - PodDisruptionBudget: exactly one of minAvailable / maxUnavailable; the selector
//     selects a workload; an integer minAvailable below the workload's replicas
//     (otherwise no voluntary eviction is ever possible and node drains hang);
//   - ServiceMonitor: the selector selects a Service of the set and each endpoint's
//     port is a port name of that Service; PodMonitor likewise for container ports;
//   - KEDA ScaledObject / TriggerAuthentication (keda.go: mirrored types, not KEDA's
//     module): the scale target is a Deployment / StatefulSet of the set, replica bounds,
//     HPA behaviour, the kafka trigger's metadata keys and values, authenticationRef names a
//     TriggerAuthentication of the set; with -partitions N, maxReplicaCount (and the
//     target's replicas) <= N.
//
// Usage: k8svalidate [-allow-namespace] [-q] [-partitions N] PATH...   (files, or directories of *.yaml / *.yml)
// Exit status 0 when everything is valid, 1 on any error (each printed on one line), 2 on usage.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// doc is one decoded manifest document.
type doc struct {
	where string // file:index
	obj   runtime.Object
	meta  metav1.Object
	kind  string
}

func (d doc) String() string { return fmt.Sprintf("%s (%s/%s)", d.where, d.kind, d.meta.GetName()) }

// workload is the pod-carrying part of a Deployment / StatefulSet / DaemonSet.
type workload struct {
	d        doc
	replicas int32
	selector *metav1.LabelSelector
	template corev1.PodTemplateSpec
	claims   []string // StatefulSet volumeClaimTemplates: volumes too
}

type checker struct {
	allowNamespace bool
	errs           []string
}

func (c *checker) errorf(d doc, format string, args ...any) {
	c.add(fmt.Sprintf("error: %s: %s", d, fmt.Sprintf(format, args...)))
}

// add records one error, always on one line.
func (c *checker) add(msg string) {
	c.errs = append(c.errs, strings.Join(strings.Fields(msg), " "))
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, autoscalingv2.AddToScheme,
		batchv1.AddToScheme, networkingv1.AddToScheme, rbacv1.AddToScheme, monitoringv1.AddToScheme,
		addKedaToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

func collect(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			ext := filepath.Ext(e.Name())
			if !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	sort.Strings(files)
	return files, nil
}

// decodeFile splits a multi-document YAML file and strictly decodes every document.
func (c *checker) decodeFile(path string, decoder runtime.Decoder) []doc {
	raw, err := os.ReadFile(path)
	if err != nil {
		c.add(fmt.Sprintf("error: %s: %v", path, err))
		return nil
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var out []doc
	for i := 1; ; i++ {
		chunk, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		where := fmt.Sprintf("%s:doc %d", path, i)
		if err != nil {
			c.add(fmt.Sprintf("error: %s: %v", where, err))
			break
		}
		if len(bytes.TrimSpace(stripComments(chunk))) == 0 {
			continue
		}
		// YAMLToJSONStrict rejects duplicate keys, which YAML parsers otherwise resolve silently.
		js, err := sigsyaml.YAMLToJSONStrict(chunk)
		if err != nil {
			c.add(fmt.Sprintf("error: %s: invalid YAML: %v", where, err))
			continue
		}
		if string(bytes.TrimSpace(js)) == "null" {
			continue
		}
		obj, gvk, err := decoder.Decode(js, nil, nil)
		if err != nil {
			// Type errors and unknown kinds stop here. Strict errors (unknown or duplicate
			// fields) come with the decoded object: report them, and check the rest too.
			kind := "?"
			if gvk != nil {
				kind = gvk.Kind
			}
			c.add(fmt.Sprintf("error: %s (%s): %v", where, kind, err))
			if !runtime.IsStrictDecodingError(err) || obj == nil {
				continue
			}
		}
		m, ok := obj.(metav1.Object)
		if !ok {
			c.add(fmt.Sprintf("error: %s: %s has no metadata", where, gvk.Kind))
			continue
		}
		out = append(out, doc{where: where, obj: obj, meta: m, kind: gvk.Kind})
	}
	return out
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' || string(t) == "---" {
			continue
		}
		out = append(out, line)
	}
	return bytes.Join(out, []byte("\n"))
}

func (c *checker) checkMeta(d doc) {
	name := d.meta.GetName()
	if name == "" && d.meta.GetGenerateName() == "" {
		c.errorf(d, "metadata.name is required")
	}
	if name != "" {
		var problems []string
		if d.kind == "Service" {
			problems = validation.IsDNS1035Label(name)
		} else {
			problems = validation.IsDNS1123Subdomain(name)
		}
		for _, p := range problems {
			c.errorf(d, "metadata.name %q: %s", name, p)
		}
	}
	if d.meta.GetNamespace() != "" && !c.allowNamespace {
		c.errorf(d, "metadata.namespace %q is set; the manifests must be namespace-agnostic "+
			"(kubectl apply -n NAMESPACE)", d.meta.GetNamespace())
	}
	c.checkLabels(d, "metadata.labels", d.meta.GetLabels())
	for k := range d.meta.GetAnnotations() {
		for _, p := range validation.IsQualifiedName(strings.ToLower(k)) {
			c.errorf(d, "metadata.annotations key %q: %s", k, p)
		}
	}
}

func (c *checker) checkLabels(d doc, field string, l map[string]string) {
	for k, v := range l {
		for _, p := range validation.IsQualifiedName(k) {
			c.errorf(d, "%s key %q: %s", field, k, p)
		}
		for _, p := range validation.IsValidLabelValue(v) {
			c.errorf(d, "%s[%q] value %q: %s", field, k, v, p)
		}
	}
}

func (c *checker) selector(d doc, field string, s *metav1.LabelSelector) labels.Selector {
	if s == nil {
		c.errorf(d, "%s is required", field)
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		c.errorf(d, "%s: %v", field, err)
		return nil
	}
	if sel.Empty() {
		c.errorf(d, "%s is empty: it would select everything", field)
		return nil
	}
	return sel
}

var supportedFieldPaths = map[string]bool{
	"metadata.name": true, "metadata.namespace": true, "metadata.uid": true,
	"metadata.labels": true, "metadata.annotations": true,
	"spec.nodeName": true, "spec.serviceAccountName": true,
	"status.hostIP": true, "status.hostIPs": true, "status.podIP": true, "status.podIPs": true,
}

func (c *checker) checkWorkload(w workload, configMaps map[string]*corev1.ConfigMap) {
	d := w.d
	sel := c.selector(d, "spec.selector", w.selector)
	if sel != nil && !sel.Matches(labels.Set(w.template.Labels)) {
		c.errorf(d, "spec.selector %s does not match spec.template.metadata.labels %v", sel, w.template.Labels)
	}
	c.checkLabels(d, "spec.template.metadata.labels", w.template.Labels)
	spec := w.template.Spec
	if len(spec.Containers) == 0 {
		c.errorf(d, "spec.template.spec.containers is empty")
	}
	volumes := map[string]corev1.Volume{}
	for _, name := range w.claims {
		volumes[name] = corev1.Volume{Name: name}
	}
	for _, v := range spec.Volumes {
		if _, dup := volumes[v.Name]; dup {
			c.errorf(d, "volume %q defined twice", v.Name)
		}
		volumes[v.Name] = v
		if v.ConfigMap != nil {
			cm, ok := configMaps[v.ConfigMap.Name]
			optional := v.ConfigMap.Optional != nil && *v.ConfigMap.Optional
			if !ok && !optional {
				c.errorf(d, "volume %q: ConfigMap %q is not among the manifests", v.Name, v.ConfigMap.Name)
			}
			if ok {
				for _, it := range v.ConfigMap.Items {
					if _, has := cm.Data[it.Key]; !has {
						if _, hasBin := cm.BinaryData[it.Key]; !hasBin {
							c.errorf(d, "volume %q: ConfigMap %q has no key %q", v.Name, cm.Name, it.Key)
						}
					}
				}
			}
		}
	}
	if sc := spec.SecurityContext; sc != nil {
		if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			c.errorf(d, "pod securityContext: runAsNonRoot with runAsUser 0")
		}
	}
	names := map[string]bool{}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, ct := range all {
		if names[ct.Name] {
			c.errorf(d, "container name %q used twice", ct.Name)
		}
		names[ct.Name] = true
		for _, p := range validation.IsDNS1123Label(ct.Name) {
			c.errorf(d, "container name %q: %s", ct.Name, p)
		}
		if strings.TrimSpace(ct.Image) == "" {
			c.errorf(d, "container %q: image is required", ct.Name)
		}
		ports := map[string]int32{}
		numbers := map[int32]bool{}
		for _, p := range ct.Ports {
			for _, msg := range validation.IsValidPortNum(int(p.ContainerPort)) {
				c.errorf(d, "container %q port %d: %s", ct.Name, p.ContainerPort, msg)
			}
			if p.Name != "" {
				for _, msg := range validation.IsValidPortName(p.Name) {
					c.errorf(d, "container %q port name %q: %s", ct.Name, p.Name, msg)
				}
				if _, dup := ports[p.Name]; dup {
					c.errorf(d, "container %q: port name %q used twice", ct.Name, p.Name)
				}
				ports[p.Name] = p.ContainerPort
			}
			numbers[p.ContainerPort] = true
		}
		probes := []struct {
			what string
			pr   *corev1.Probe
		}{{"livenessProbe", ct.LivenessProbe}, {"readinessProbe", ct.ReadinessProbe}, {"startupProbe", ct.StartupProbe}}
		for _, p := range probes {
			what, pr := p.what, p.pr
			if pr == nil {
				continue
			}
			var port *intstr.IntOrString
			switch {
			case pr.HTTPGet != nil:
				port = &pr.HTTPGet.Port
				if !strings.HasPrefix(pr.HTTPGet.Path, "/") {
					c.errorf(d, "container %q %s: httpGet.path %q must start with /", ct.Name, what, pr.HTTPGet.Path)
				}
			case pr.TCPSocket != nil:
				port = &pr.TCPSocket.Port
			case pr.GRPC != nil, pr.Exec != nil:
			default:
				c.errorf(d, "container %q %s: no handler (httpGet, tcpSocket, grpc or exec)", ct.Name, what)
			}
			if port != nil {
				if port.Type == intstr.String {
					if _, ok := ports[port.StrVal]; !ok {
						c.errorf(d, "container %q %s: port %q is not a named port of the container", ct.Name, what, port.StrVal)
					}
				} else if !numbers[port.IntVal] {
					c.errorf(d, "container %q %s: port %d is not a port of the container", ct.Name, what, port.IntVal)
				}
			}
			if what == "livenessProbe" && pr.SuccessThreshold > 1 {
				c.errorf(d, "container %q livenessProbe: successThreshold must be 1", ct.Name)
			}
		}
		for _, m := range ct.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				c.errorf(d, "container %q: volumeMount %q names no volume", ct.Name, m.Name)
			}
			if !strings.HasPrefix(m.MountPath, "/") {
				c.errorf(d, "container %q: mountPath %q must be absolute", ct.Name, m.MountPath)
			}
		}
		for _, e := range ct.Env {
			if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
				fp := e.ValueFrom.FieldRef.FieldPath
				base := fp
				if i := strings.Index(fp, "["); i > 0 {
					base = fp[:i]
				}
				if !supportedFieldPaths[base] {
					c.errorf(d, "container %q env %s: unsupported fieldPath %q", ct.Name, e.Name, fp)
				}
			}
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				ref := e.ValueFrom.ConfigMapKeyRef
				if cm, ok := configMaps[ref.Name]; ok {
					if _, has := cm.Data[ref.Key]; !has {
						c.errorf(d, "container %q env %s: ConfigMap %q has no key %q", ct.Name, e.Name, ref.Name, ref.Key)
					}
				} else if ref.Optional == nil || !*ref.Optional {
					c.errorf(d, "container %q env %s: ConfigMap %q is not among the manifests", ct.Name, e.Name, ref.Name)
				}
			}
		}
		for _, ef := range ct.EnvFrom {
			if ef.ConfigMapRef != nil {
				if _, ok := configMaps[ef.ConfigMapRef.Name]; !ok && (ef.ConfigMapRef.Optional == nil || !*ef.ConfigMapRef.Optional) {
					c.errorf(d, "container %q envFrom: ConfigMap %q is not among the manifests", ct.Name, ef.ConfigMapRef.Name)
				}
			}
		}
		for res, lim := range ct.Resources.Limits {
			if req, ok := ct.Resources.Requests[res]; ok && req.Cmp(lim) > 0 {
				c.errorf(d, "container %q: %s request %s exceeds its limit %s", ct.Name, res, req.String(), lim.String())
			}
		}
		if sc := ct.SecurityContext; sc != nil {
			if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				c.errorf(d, "container %q securityContext: runAsNonRoot with runAsUser 0", ct.Name)
			}
			if sc.Privileged != nil && *sc.Privileged && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
				c.errorf(d, "container %q securityContext: privileged with allowPrivilegeEscalation false", ct.Name)
			}
		}
	}
}

func containerPortNames(t corev1.PodTemplateSpec) map[string]bool {
	out := map[string]bool{}
	for _, ct := range t.Spec.Containers {
		for _, p := range ct.Ports {
			if p.Name != "" {
				out[p.Name] = true
			}
		}
	}
	return out
}

func main() {
	allowNamespace := flag.Bool("allow-namespace", false, "accept metadata.namespace")
	quiet := flag.Bool("q", false, "print nothing when everything is valid")
	partitions := flag.Int("partitions", 0, "the input topics' partition count: no KEDA ScaledObject may scale its workload above it")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: k8svalidate [-allow-namespace] [-q] [-partitions N] PATH...  (files or directories of *.yaml)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	files, err := collect(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "error: no *.yaml / *.yml files in", strings.Join(flag.Args(), " "))
		os.Exit(2)
	}

	scheme := newScheme()
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	c := &checker{allowNamespace: *allowNamespace}
	var docs []doc
	for _, f := range files {
		docs = append(docs, c.decodeFile(f, decoder)...)
	}

	configMaps := map[string]*corev1.ConfigMap{}
	var workloads []workload
	type sts struct {
		d           doc
		serviceName string
	}
	var statefulSets []sts
	var services []*corev1.Service
	svcDoc := map[*corev1.Service]doc{}
	seen := map[string]doc{}
	for _, d := range docs {
		c.checkMeta(d)
		key := d.kind + "/" + d.meta.GetName()
		if prev, dup := seen[key]; dup {
			c.errorf(d, "%s is defined twice (also %s)", key, prev.where)
		}
		seen[key] = d
		switch o := d.obj.(type) {
		case *corev1.ConfigMap:
			configMaps[o.Name] = o
			for k := range o.Data {
				for _, p := range validation.IsConfigMapKey(k) {
					c.errorf(d, "data key %q: %s", k, p)
				}
			}
		case *appsv1.Deployment:
			r := int32(1)
			if o.Spec.Replicas != nil {
				r = *o.Spec.Replicas
			}
			workloads = append(workloads, workload{d, r, o.Spec.Selector, o.Spec.Template, nil})
		case *appsv1.StatefulSet:
			r := int32(1)
			if o.Spec.Replicas != nil {
				r = *o.Spec.Replicas
			}
			var claims []string
			for _, pvc := range o.Spec.VolumeClaimTemplates {
				claims = append(claims, pvc.Name)
				if len(pvc.Spec.AccessModes) == 0 {
					c.errorf(d, "volumeClaimTemplates %q: accessModes is required", pvc.Name)
				}
				if _, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
					c.errorf(d, "volumeClaimTemplates %q: resources.requests.storage is required", pvc.Name)
				}
			}
			statefulSets = append(statefulSets, sts{d, o.Spec.ServiceName})
			workloads = append(workloads, workload{d, r, o.Spec.Selector, o.Spec.Template, claims})
		case *appsv1.DaemonSet:
			workloads = append(workloads, workload{d, 1, o.Spec.Selector, o.Spec.Template, nil})
		case *corev1.Service:
			services = append(services, o)
			svcDoc[o] = d
		}
	}
	for _, w := range workloads {
		c.checkWorkload(w, configMaps)
	}

	selects := func(sel labels.Selector) []workload {
		var out []workload
		for _, w := range workloads {
			if sel.Matches(labels.Set(w.template.Labels)) {
				out = append(out, w)
			}
		}
		return out
	}

	for _, svc := range services {
		d := svcDoc[svc]
		if len(svc.Spec.Ports) == 0 {
			c.errorf(d, "spec.ports is empty")
		}
		names := map[string]bool{}
		for _, p := range svc.Spec.Ports {
			if names[p.Name] {
				c.errorf(d, "port name %q used twice", p.Name)
			}
			names[p.Name] = true
			if len(svc.Spec.Ports) > 1 && p.Name == "" {
				c.errorf(d, "port %d: a name is required when a Service has several ports", p.Port)
			}
			for _, msg := range validation.IsValidPortNum(int(p.Port)) {
				c.errorf(d, "port %d: %s", p.Port, msg)
			}
		}
		if len(svc.Spec.Selector) == 0 {
			continue // an ExternalName / manually managed Service
		}
		c.checkLabels(d, "spec.selector", svc.Spec.Selector)
		matched := selects(labels.SelectorFromSet(svc.Spec.Selector))
		if len(matched) == 0 {
			c.errorf(d, "spec.selector %v selects no workload of the manifests", svc.Spec.Selector)
			continue
		}
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.Type != intstr.String {
				continue
			}
			for _, w := range matched {
				if !containerPortNames(w.template)[p.TargetPort.StrVal] {
					c.errorf(d, "port %q: targetPort %q is not a container port name of %s", p.Name, p.TargetPort.StrVal, w.d)
				}
			}
		}
	}

	for _, st := range statefulSets {
		found := false
		for _, svc := range services {
			found = found || svc.Name == st.serviceName
		}
		if st.serviceName != "" && !found {
			c.errorf(st.d, "spec.serviceName %q is not a Service of the manifests", st.serviceName)
		}
	}

	for _, d := range docs {
		switch o := d.obj.(type) {
		case *policyv1.PodDisruptionBudget:
			if (o.Spec.MinAvailable == nil) == (o.Spec.MaxUnavailable == nil) {
				c.errorf(d, "exactly one of spec.minAvailable and spec.maxUnavailable must be set")
			}
			sel := c.selector(d, "spec.selector", o.Spec.Selector)
			if sel == nil {
				continue
			}
			matched := selects(sel)
			if len(matched) == 0 {
				c.errorf(d, "spec.selector %s selects no workload of the manifests", sel)
			}
			for _, w := range matched {
				if m := o.Spec.MinAvailable; m != nil && m.Type == intstr.Int && m.IntVal >= w.replicas {
					c.errorf(d, "minAvailable %d >= %s replicas %d: no pod could ever be evicted (drains hang)", m.IntVal, w.d, w.replicas)
				}
				if m := o.Spec.MaxUnavailable; m != nil && m.Type == intstr.Int && m.IntVal < 1 {
					c.errorf(d, "maxUnavailable %d: no pod could ever be evicted (drains hang)", m.IntVal)
				}
			}
		case *monitoringv1.ServiceMonitor:
			sel := c.selector(d, "spec.selector", &o.Spec.Selector)
			if sel == nil {
				continue
			}
			if len(o.Spec.Endpoints) == 0 {
				c.errorf(d, "spec.endpoints is empty")
			}
			var matched []*corev1.Service
			for _, svc := range services {
				if sel.Matches(labels.Set(svc.Labels)) {
					matched = append(matched, svc)
				}
			}
			if len(matched) == 0 {
				c.errorf(d, "spec.selector %s selects no Service of the manifests (it matches Service labels)", sel)
			}
			for i, ep := range o.Spec.Endpoints {
				if ep.Path != "" && !strings.HasPrefix(ep.Path, "/") {
					c.errorf(d, "endpoints[%d].path %q must start with /", i, ep.Path)
				}
				if ep.Port == "" {
					if ep.TargetPort == nil {
						c.errorf(d, "endpoints[%d]: port (a Service port name) or targetPort is required", i)
					}
					continue
				}
				for _, svc := range matched {
					found := false
					for _, p := range svc.Spec.Ports {
						found = found || p.Name == ep.Port
					}
					if !found {
						c.errorf(d, "endpoints[%d].port %q is not a port name of Service %s", i, ep.Port, svc.Name)
					}
				}
			}
		case *monitoringv1.PodMonitor:
			sel := c.selector(d, "spec.selector", &o.Spec.Selector)
			if sel == nil {
				continue
			}
			matched := selects(sel)
			if len(matched) == 0 {
				c.errorf(d, "spec.selector %s selects no workload of the manifests", sel)
			}
			for i, ep := range o.Spec.PodMetricsEndpoints {
				if ep.Port == nil {
					continue
				}
				for _, w := range matched {
					if !containerPortNames(w.template)[*ep.Port] {
						c.errorf(d, "podMetricsEndpoints[%d].port %q is not a container port name of %s", i, *ep.Port, w.d)
					}
				}
			}
		}
	}

	c.checkKeda(docs, workloads, *partitions)

	if len(c.errs) > 0 {
		for _, e := range c.errs {
			fmt.Println(e)
		}
		fmt.Printf("%d error(s) in %d document(s) of %d file(s)\n", len(c.errs), len(docs), len(files))
		os.Exit(1)
	}
	if !*quiet {
		kinds := map[string]int{}
		for _, d := range docs {
			kinds[d.kind]++
		}
		var parts []string
		for k, n := range kinds {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
		sort.Strings(parts)
		fmt.Printf("ok: %d document(s) in %d file(s): %s\n", len(docs), len(files), strings.Join(parts, ", "))
	}
}
