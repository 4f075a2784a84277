// KEDA objects (keda.sh/v1alpha1): ScaledObject and TriggerAuthentication.
//
// KEDA's own API module (github.com/kedacore/keda/v2) is one module for the whole operator:
// its go.mod requires ~360 modules (every scaler's cloud SDK) and Go 1.27, above the
// toolchain these tools pin. So the types below mirror KEDA's Go API types field for field
// (apis/keda/v1alpha1: scaledobject_types.go, scaletriggers_types.go; JSON names and
// shapes as there, the HPA behaviour is the real k8s.io/api autoscaling/v2 type) and are
// decoded with the same strict decoder as everything else: an unknown field, a duplicate
// key or a wrong type is an error. ScaledObject's spec is mirrored completely;
// TriggerAuthentication only with the parts secrets and environment variables use
// (secretTargetRef, env, configMapTargetRef, podIdentity): a valid KEDA field outside them
// (hashiCorpVault, azureKeyVault, ...) is reported as unknown. KEDA's CRD schema itself is
// not checked (no pinned copy); the trigger metadata of the kafka scaler, a free-form map in
// the CRD, is checked here against the scaler's documented keys and value formats.
package main

import (
	"encoding/json"
	"strconv"
	"strings"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var kedaGroupVersion = schema.GroupVersion{Group: "keda.sh", Version: "v1alpha1"}

type ScaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ScaledObjectSpec `json:"spec"`
}

type ScaledObjectSpec struct {
	ScaleTargetRef        *ScaleTarget    `json:"scaleTargetRef"`
	PollingInterval       *int32          `json:"pollingInterval,omitempty"`
	InitialCooldownPeriod *int32          `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod        *int32          `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount      *int32          `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32          `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32          `json:"maxReplicaCount,omitempty"`
	Advanced              *AdvancedConfig `json:"advanced,omitempty"`
	Triggers              []ScaleTriggers `json:"triggers"`
	Fallback              *Fallback       `json:"fallback,omitempty"`
}

type ScaleTarget struct {
	Name                   string `json:"name"`
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type AdvancedConfig struct {
	HorizontalPodAutoscalerConfig *HorizontalPodAutoscalerConfig `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool                           `json:"restoreToOriginalReplicaCount,omitempty"`
	ScalingModifiers              *ScalingModifiers              `json:"scalingModifiers,omitempty"`
}

type HorizontalPodAutoscalerConfig struct {
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
	Name     string                                         `json:"name,omitempty"`
}

type ScalingModifiers struct {
	Formula          string                         `json:"formula,omitempty"`
	Target           string                         `json:"target,omitempty"`
	ActivationTarget string                         `json:"activationTarget,omitempty"`
	MetricType       autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

type Fallback struct {
	FailureThreshold int32  `json:"failureThreshold"`
	Replicas         int32  `json:"replicas"`
	Behavior         string `json:"behavior,omitempty"`
}

type ScaleTriggers struct {
	Type              string                         `json:"type"`
	Name              string                         `json:"name,omitempty"`
	UseCachedMetrics  bool                           `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string              `json:"metadata"`
	AuthenticationRef *AuthenticationRef             `json:"authenticationRef,omitempty"`
	MetricType        autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

type AuthenticationRef struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
}

type TriggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              TriggerAuthenticationSpec `json:"spec"`
}

type TriggerAuthenticationSpec struct {
	PodIdentity        *AuthPodIdentity         `json:"podIdentity,omitempty"`
	SecretTargetRef    []AuthSecretTargetRef    `json:"secretTargetRef,omitempty"`
	Env                []AuthEnvironment        `json:"env,omitempty"`
	ConfigMapTargetRef []AuthConfigMapTargetRef `json:"configMapTargetRef,omitempty"`
}

type AuthPodIdentity struct {
	Provider              string  `json:"provider"`
	IdentityID            *string `json:"identityId,omitempty"`
	RoleArn               *string `json:"roleArn,omitempty"`
	IdentityOwner         *string `json:"identityOwner,omitempty"`
	IdentityTenantID      *string `json:"identityTenantId,omitempty"`
	IdentityAuthorityHost *string `json:"identityAuthorityHost,omitempty"`
}

type AuthSecretTargetRef struct {
	Parameter string `json:"parameter"`
	Name      string `json:"name"`
	Key       string `json:"key"`
}

type AuthEnvironment struct {
	Parameter     string `json:"parameter"`
	Name          string `json:"name"`
	ContainerName string `json:"containerName,omitempty"`
}

type AuthConfigMapTargetRef struct {
	Parameter string `json:"parameter"`
	Name      string `json:"name"`
	Key       string `json:"key"`
}

// DeepCopyObject (runtime.Object) through JSON: these objects are small and decoded once.
func (o *ScaledObject) DeepCopyObject() runtime.Object {
	out := &ScaledObject{}
	jsonCopy(o, out)
	return out
}

func (o *TriggerAuthentication) DeepCopyObject() runtime.Object {
	out := &TriggerAuthentication{}
	jsonCopy(o, out)
	return out
}

func jsonCopy(in, out any) {
	b, err := json.Marshal(in)
	if err == nil {
		err = json.Unmarshal(b, out)
	}
	if err != nil {
		panic(err)
	}
}

func addKedaToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(kedaGroupVersion, &ScaledObject{}, &TriggerAuthentication{})
	return nil
}

// The kafka scaler's metadata keys (KEDA docs, "Apache Kafka" scaler). The metadata is a
// plain string map in the CRD: a misspelt key would be ignored by KEDA, silently.
var kafkaMetadataKeys = map[string]bool{
	"bootstrapServers": true, "bootstrapServersFromEnv": true,
	"consumerGroup": true, "consumerGroupFromEnv": true,
	"topic": true, "topicFromEnv": true, "partitionLimitation": true,
	"lagThreshold": true, "activationLagThreshold": true, "offsetResetPolicy": true,
	"allowIdleConsumers": true, "excludePersistentLag": true, "scaleToZeroOnInvalidOffset": true,
	"limitToPartitionsWithLag": true, "ensureEvenDistributionOfPartitions": true, "version": true,
	"sasl": true, "username": true, "password": true, "tls": true, "ca": true, "cert": true,
	"key": true, "keyPassword": true, "unsafeSsl": true,
	"oauthTokenEndpointUri": true, "scopes": true, "oauthExtensions": true,
	"awsRegion": true, "awsEndpoint": true,
	"kerberosServiceName": true, "realm": true, "kerberosConfig": true, "keytab": true,
	"kerberosDisableFAST": true,
}

var kafkaBoolKeys = []string{
	"allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset",
	"limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions", "unsafeSsl",
}

// The authentication parameters of the kafka scaler (TriggerAuthentication parameter names).
var kafkaAuthParams = map[string]bool{
	"sasl": true, "username": true, "password": true, "tls": true, "ca": true, "cert": true,
	"key": true, "keyPassword": true, "oauthTokenEndpointUri": true, "scopes": true,
	"oauthExtensions": true, "awsRegion": true, "awsAccessKeyID": true, "awsSecretAccessKey": true,
	"awsRoleArn": true, "kerberosServiceName": true, "realm": true, "kerberosConfig": true,
	"keytab": true,
}

var kafkaSaslTypes = map[string]bool{
	"none": true, "plaintext": true, "scram_sha256": true, "scram_sha512": true,
	"oauthbearer": true, "gssapi": true, "aws_msk_iam": true,
}

// checkKeda checks ScaledObjects against the workloads and TriggerAuthentications of the
// set. partitions > 0: no ScaledObject may scale a workload above it (-partitions).
func (c *checker) checkKeda(docs []doc, workloads []workload, partitions int) {
	auths := map[string]*TriggerAuthentication{}
	for _, d := range docs {
		if a, ok := d.obj.(*TriggerAuthentication); ok {
			auths[a.Name] = a
			c.checkTriggerAuthentication(d, a)
		}
	}
	hpas := map[string]doc{} // kind/name of the target -> the HPA
	for _, d := range docs {
		if h, ok := d.obj.(*autoscalingv2.HorizontalPodAutoscaler); ok {
			hpas[h.Spec.ScaleTargetRef.Kind+"/"+h.Spec.ScaleTargetRef.Name] = d
		}
	}
	for _, d := range docs {
		so, ok := d.obj.(*ScaledObject)
		if !ok {
			continue
		}
		c.checkScaledObject(d, so, workloads, auths, partitions)
		if ref := so.Spec.ScaleTargetRef; ref != nil {
			kind := ref.Kind
			if kind == "" {
				kind = "Deployment"
			}
			// KEDA creates its own HPA for the target; a second one would fight it.
			if h, dup := hpas[kind+"/"+ref.Name]; dup {
				c.errorf(d, "%s %q is also scaled by %s: KEDA refuses a target that another HPA scales", kind, ref.Name, h)
			}
		}
	}
}

func (c *checker) checkTriggerAuthentication(d doc, a *TriggerAuthentication) {
	s := a.Spec
	if s.PodIdentity == nil && len(s.SecretTargetRef) == 0 && len(s.Env) == 0 && len(s.ConfigMapTargetRef) == 0 {
		c.errorf(d, "spec: no secretTargetRef, env, configMapTargetRef or podIdentity")
	}
	seen := map[string]bool{}
	check := func(field string, i int, parameter, name, key string) {
		if parameter == "" || name == "" || (field != "env" && key == "") {
			c.errorf(d, "spec.%s[%d]: parameter, name and key are required", field, i)
		}
		if seen[parameter] {
			c.errorf(d, "spec.%s[%d]: parameter %q set twice", field, i, parameter)
		}
		seen[parameter] = true
	}
	for i, r := range s.SecretTargetRef {
		check("secretTargetRef", i, r.Parameter, r.Name, r.Key)
	}
	for i, r := range s.ConfigMapTargetRef {
		check("configMapTargetRef", i, r.Parameter, r.Name, r.Key)
	}
	for i, r := range s.Env {
		check("env", i, r.Parameter, r.Name, "")
	}
}

func (c *checker) checkScaledObject(d doc, so *ScaledObject, workloads []workload, auths map[string]*TriggerAuthentication, partitions int) {
	s := so.Spec
	// The scale target: a Deployment or StatefulSet of the set (KEDA's default kind: Deployment).
	var target *workload
	if s.ScaleTargetRef == nil || s.ScaleTargetRef.Name == "" {
		c.errorf(d, "spec.scaleTargetRef.name is required")
	} else {
		kind := s.ScaleTargetRef.Kind
		if kind == "" {
			kind = "Deployment"
		}
		if v := s.ScaleTargetRef.APIVersion; v != "" && v != "apps/v1" {
			c.errorf(d, "spec.scaleTargetRef.apiVersion %q: a %s is apps/v1", v, kind)
		}
		if kind != "Deployment" && kind != "StatefulSet" {
			c.errorf(d, "spec.scaleTargetRef.kind %q: only a Deployment or StatefulSet of the manifests can be checked", kind)
		}
		for i := range workloads {
			if workloads[i].d.kind == kind && workloads[i].d.meta.GetName() == s.ScaleTargetRef.Name {
				target = &workloads[i]
			}
		}
		if target == nil {
			c.errorf(d, "spec.scaleTargetRef: %s %q is not among the manifests", kind, s.ScaleTargetRef.Name)
		}
	}
	// Replica bounds, as KEDA's admission webhook checks them (min defaults to 0, max to 100).
	minR, maxR := int32(0), int32(100)
	if s.MinReplicaCount != nil {
		minR = *s.MinReplicaCount
	}
	if s.MaxReplicaCount != nil {
		maxR = *s.MaxReplicaCount
	} else {
		c.errorf(d, "spec.maxReplicaCount is not set (KEDA's default is 100): set it to the input partition count")
	}
	if minR < 0 {
		c.errorf(d, "spec.minReplicaCount %d is negative", minR)
	}
	if minR > maxR {
		c.errorf(d, "spec.minReplicaCount %d exceeds spec.maxReplicaCount %d", minR, maxR)
	}
	if s.IdleReplicaCount != nil && *s.IdleReplicaCount >= minR {
		c.errorf(d, "spec.idleReplicaCount %d must be below spec.minReplicaCount %d", *s.IdleReplicaCount, minR)
	}
	for _, f := range []struct {
		name string
		v    *int32
	}{{"pollingInterval", s.PollingInterval}, {"cooldownPeriod", s.CooldownPeriod}, {"initialCooldownPeriod", s.InitialCooldownPeriod}} {
		if f.v != nil && *f.v < 0 {
			c.errorf(d, "spec.%s %d is negative", f.name, *f.v)
		}
	}
	if partitions > 0 {
		if maxR > int32(partitions) {
			c.errorf(d, "spec.maxReplicaCount %d exceeds the input partition count %d: replicas beyond it get no partition", maxR, partitions)
		}
		if target != nil && target.replicas > int32(partitions) {
			c.errorf(d, "%s replicas %d exceed the input partition count %d", target.d, target.replicas, partitions)
		}
	}
	if fb := s.Fallback; fb != nil {
		if fb.FailureThreshold < 0 || fb.Replicas < 0 {
			c.errorf(d, "spec.fallback: failureThreshold and replicas must be >= 0")
		}
		switch fb.Behavior {
		case "", "static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower":
		default:
			c.errorf(d, "spec.fallback.behavior %q is not one of static, currentReplicas, currentReplicasIfHigher, currentReplicasIfLower", fb.Behavior)
		}
	}
	if adv := s.Advanced; adv != nil && adv.HorizontalPodAutoscalerConfig != nil && adv.HorizontalPodAutoscalerConfig.Behavior != nil {
		b := adv.HorizontalPodAutoscalerConfig.Behavior
		for _, r := range []struct {
			what  string
			rules *autoscalingv2.HPAScalingRules
		}{{"scaleUp", b.ScaleUp}, {"scaleDown", b.ScaleDown}} {
			if r.rules == nil {
				continue
			}
			if w := r.rules.StabilizationWindowSeconds; w != nil && (*w < 0 || *w > 3600) {
				c.errorf(d, "behavior.%s.stabilizationWindowSeconds %d is outside 0..3600", r.what, *w)
			}
			for i, p := range r.rules.Policies {
				if p.Type != autoscalingv2.PodsScalingPolicy && p.Type != autoscalingv2.PercentScalingPolicy {
					c.errorf(d, "behavior.%s.policies[%d].type %q is not Pods or Percent", r.what, i, p.Type)
				}
				if p.Value <= 0 || p.PeriodSeconds <= 0 || p.PeriodSeconds > 1800 {
					c.errorf(d, "behavior.%s.policies[%d]: value > 0 and periodSeconds in 1..1800 are required", r.what, i)
				}
			}
		}
	}
	if len(s.Triggers) == 0 {
		c.errorf(d, "spec.triggers is empty")
	}
	names := map[string]bool{}
	for i, t := range s.Triggers {
		if t.Name != "" {
			if names[t.Name] {
				c.errorf(d, "spec.triggers[%d].name %q is used twice", i, t.Name)
			}
			names[t.Name] = true
		}
		if t.MetricType != "" && t.MetricType != autoscalingv2.AverageValueMetricType && t.MetricType != autoscalingv2.ValueMetricType {
			c.errorf(d, "spec.triggers[%d].metricType %q is not AverageValue or Value", i, t.MetricType)
		}
		var auth *TriggerAuthentication
		if ref := t.AuthenticationRef; ref != nil {
			switch ref.Kind {
			case "", "TriggerAuthentication":
				auth = auths[ref.Name]
				if auth == nil {
					c.errorf(d, "spec.triggers[%d].authenticationRef: TriggerAuthentication %q is not among the manifests", i, ref.Name)
				}
			case "ClusterTriggerAuthentication": // cluster-scoped: lives outside the set
			default:
				c.errorf(d, "spec.triggers[%d].authenticationRef.kind %q is not TriggerAuthentication or ClusterTriggerAuthentication", i, ref.Kind)
			}
		}
		switch t.Type {
		case "kafka", "apache-kafka":
			c.checkKafkaTrigger(d, i, t, auth)
		case "":
			c.errorf(d, "spec.triggers[%d].type is required", i)
		default:
			c.errorf(d, "spec.triggers[%d].type %q: only the kafka scaler is known to this tool", i, t.Type)
		}
	}
}

func (c *checker) checkKafkaTrigger(d doc, i int, t ScaleTriggers, auth *TriggerAuthentication) {
	m := t.Metadata
	where := "spec.triggers[" + strconv.Itoa(i) + "].metadata"
	for k := range m {
		if !kafkaMetadataKeys[k] {
			c.errorf(d, "%s: unknown key %q of the kafka scaler", where, k)
		}
	}
	for _, pair := range [][2]string{{"bootstrapServers", "bootstrapServersFromEnv"}, {"consumerGroup", "consumerGroupFromEnv"}, {"topic", "topicFromEnv"}} {
		// topic is optional for KEDA (every topic of the group), but then the labels topic's
		// lag would count too and the partition cap would be the sum of both topics'.
		if strings.TrimSpace(m[pair[0]]) == "" && strings.TrimSpace(m[pair[1]]) == "" {
			c.errorf(d, "%s: %s (or %s) is required", where, pair[0], pair[1])
		}
	}
	for _, k := range []string{"lagThreshold", "activationLagThreshold"} {
		v, ok := m[k]
		if !ok {
			if k == "lagThreshold" {
				c.errorf(d, "%s: lagThreshold is required (KEDA's default of 10 messages would scale on any lag)", where)
			}
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || (k == "lagThreshold" && n == 0) {
			c.errorf(d, "%s: %s %q is not a positive integer", where, k, v)
		}
	}
	if v, ok := m["offsetResetPolicy"]; ok && v != "earliest" && v != "latest" {
		c.errorf(d, "%s: offsetResetPolicy %q is not earliest or latest", where, v)
	}
	for _, k := range kafkaBoolKeys {
		if v, ok := m[k]; ok {
			if _, err := strconv.ParseBool(v); err != nil {
				c.errorf(d, "%s: %s %q is not a boolean", where, k, v)
			}
		}
	}
	if v, ok := m["sasl"]; ok && !kafkaSaslTypes[v] {
		c.errorf(d, "%s: sasl %q is not a SASL type of the kafka scaler", where, v)
	}
	if v, ok := m["tls"]; ok && v != "enable" && v != "disable" {
		c.errorf(d, "%s: tls %q is not enable or disable", where, v)
	}
	if auth == nil {
		return
	}
	params := map[string]bool{}
	for _, r := range auth.Spec.SecretTargetRef {
		params[r.Parameter] = true
	}
	for _, r := range auth.Spec.Env {
		params[r.Parameter] = true
	}
	for _, r := range auth.Spec.ConfigMapTargetRef {
		params[r.Parameter] = true
	}
	for p := range params {
		if !kafkaAuthParams[p] {
			c.errorf(d, "spec.triggers[%d]: TriggerAuthentication %q parameter %q is not a parameter of the kafka scaler", i, auth.Name, p)
		}
	}
	if params["sasl"] || (m["sasl"] != "" && m["sasl"] != "none") {
		if !params["username"] || !params["password"] {
			if m["sasl"] != "oauthbearer" && m["sasl"] != "gssapi" && m["sasl"] != "aws_msk_iam" {
				c.errorf(d, "spec.triggers[%d]: SASL needs the username and password parameters in TriggerAuthentication %q", i, auth.Name)
			}
		}
	}
}
