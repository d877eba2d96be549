//! The configuration files of the node's processes, as text: one function each, so the
//! addresses they listen on can be read in one place.

use std::path::Path;

use crate::versions::KUBERNETES_VERSION;

/// The node's own address, on a bridge of the cluster's (`NODE_LINK`): the API server, the
/// kubelet and NodePorts listen there, never on the machine's external interface.
pub const NODE_IP: &str = "172.31.250.1";
/// The bridge that holds [`NODE_IP`].
pub const NODE_LINK: &str = "todo-node0";
/// The bridge the pods are attached to.
pub const POD_BRIDGE: &str = "todo-cni0";
pub const POD_SUBNET: &str = "10.88.0.0/16";
pub const SERVICE_SUBNET: &str = "10.96.0.0/16";
pub const DNS_SERVICE_IP: &str = "10.96.0.10";
pub const NODE_NAME: &str = "todo-node";
pub const API_PORT: u16 = 6443;
/// Where containerd keeps its sockets and state (tmpfs, like /run/containerd).
pub const CONTAINERD_RUN: &str = "/run/todo-eda/containerd";
/// The pause image, made locally ([`super::images`]).
pub const PAUSE_IMAGE: &str = "localhost/todo-eda/pause:1";

pub fn containerd_socket() -> String {
    format!("{CONTAINERD_RUN}/containerd.sock")
}

pub fn kubeadm(state: &Path) -> String {
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: {NODE_IP}
  bindPort: {API_PORT}
nodeRegistration:
  name: {NODE_NAME}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v{KUBERNETES_VERSION}
clusterName: todo-eda
certificatesDir: {pki}
controlPlaneEndpoint: {NODE_IP}:{API_PORT}
networking:
  serviceSubnet: {SERVICE_SUBNET}
  podSubnet: {POD_SUBNET}
  dnsDomain: cluster.local
apiServer:
  certSANs: [\"{NODE_IP}\", \"127.0.0.1\", \"localhost\"]
",
        pki = state.join("pki").display()
    )
}

pub fn containerd(state: &Path) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{CONTAINERD_RUN}/state"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # The VM's capability set lacks CAP_SYS_RESOURCE: negative OOM scores are refused.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
        root = state.join("containerd").display(),
        socket = containerd_socket(),
        cni = state.join("cni/net.d").display(),
    )
}

pub fn cni(state: &Path) -> String {
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "todo-eda",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{POD_BRIDGE}",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{"subnet": "{POD_SUBNET}"}}]],
        "routes": [{{"dst": "0.0.0.0/0"}}],
        "dataDir": "{ipam}"
      }}
    }},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
  ]
}}
"#,
        ipam = state.join("cni/ipam").display()
    )
}

pub fn kubelet(state: &Path) -> String {
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
clusterDNS: [{DNS_SERVICE_IP}]
clusterDomain: cluster.local
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
# No image garbage collection: the images are made on this machine and cannot be pulled
# again, and the disk it shares with builds fills and empties (the pause image was
# collected once when a build took the disk to 89 %).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
staticPodPath: \"\"
",
        socket = containerd_socket(),
        ca = state.join("pki/ca.crt").display()
    )
}

pub fn kube_proxy(state: &Path) -> String {
    format!(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
mode: iptables
clusterCIDR: {POD_SUBNET}
hostnameOverride: {NODE_NAME}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [\"{NODE_IP}/32\"]
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
",
        kubeconfig = state.join("kubeconfig/admin.conf").display()
    )
}

/// The cluster's DNS: CoreDNS in kube-system, answering on [`DNS_SERVICE_IP`].
pub fn coredns_manifest(image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: coredns
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:coredns
subjects:
  - kind: ServiceAccount
    name: coredns
    namespace: kube-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns
  namespace: kube-system
data:
  Corefile: |
    .:53 {{
        errors
        health {{
          lameduck 5s
        }}
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {{
          pods insecure
          fallthrough in-addr.arpa ip6.arpa
        }}
        forward . /etc/resolv.conf
        cache 30
        loop
        loadbalance
    }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  replicas: 1
  selector:
    matchLabels:
      k8s-app: kube-dns
  template:
    metadata:
      labels:
        k8s-app: kube-dns
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      containers:
        - name: coredns
          image: {image}
          imagePullPolicy: Never
          command: ["/coredns", "-conf", "/etc/coredns/Corefile"]
          ports:
            - {{containerPort: 53, name: dns, protocol: UDP}}
            - {{containerPort: 53, name: dns-tcp, protocol: TCP}}
          readinessProbe:
            httpGet: {{path: /ready, port: 8181}}
          livenessProbe:
            httpGet: {{path: /health, port: 8080}}
          volumeMounts:
            - {{name: config, mountPath: /etc/coredns, readOnly: true}}
      volumes:
        - name: config
          configMap:
            name: coredns
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  clusterIP: {DNS_SERVICE_IP}
  selector:
    k8s-app: kube-dns
  ports:
    - {{name: dns, port: 53, protocol: UDP}}
    - {{name: dns-tcp, port: 53, protocol: TCP}}
"#
    )
}
