//! The facility graph and its shortest routes.

use super::*;

/// The facility: nodes, undirected weighted edges, and an adjacency list for Dijkstra.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub nodes: Vec<w::Node>,
    pub edges: Vec<w::Edge>,
    index: HashMap<String, usize>,
    adj: Vec<Vec<(usize, f64)>>,
}

#[derive(Clone, Copy, PartialEq)]
struct HeapItem(f64, usize);
impl Eq for HeapItem {}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapItem {
    fn cmp(&self, other: &Self) -> Ordering {
        // Min-heap on the distance.
        other
            .0
            .total_cmp(&self.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

impl Graph {
    /// Builds a graph from stored (already validated) nodes and edges; edges to unknown nodes are
    /// dropped.
    #[must_use]
    pub fn build(nodes: Vec<w::Node>, edges: Vec<w::Edge>) -> Self {
        let mut index = HashMap::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            index.entry(n.id.clone()).or_insert(i);
        }
        let mut adj = vec![Vec::new(); nodes.len()];
        for e in &edges {
            if let (Some(&a), Some(&b)) = (index.get(&e.from), index.get(&e.to)) {
                adj[a].push((b, e.seconds));
                adj[b].push((a, e.seconds));
            }
        }
        Self {
            nodes,
            edges,
            index,
            adj,
        }
    }

    /// Validates a `set-facility`: ids, unique nodes, edges between known nodes with a finite
    /// non-negative time, and connected.
    ///
    /// # Errors
    /// `Invalid` naming the first problem.
    pub fn new(nodes: Vec<w::Node>, edges: Vec<w::Edge>) -> Result<Self, DomainError> {
        if nodes.is_empty() {
            return Err(DomainError::Invalid("`nodes` must not be empty".into()));
        }
        let mut seen = BTreeSet::new();
        for n in &nodes {
            check_id("nodes[].id", &n.id)?;
            if !seen.insert(n.id.as_str()) {
                return Err(DomainError::Invalid(format!(
                    "node {:?} appears twice",
                    n.id
                )));
            }
        }
        for e in &edges {
            if !seen.contains(e.from.as_str()) || !seen.contains(e.to.as_str()) {
                return Err(DomainError::Invalid(format!(
                    "edge {:?} - {:?} names a node that is not in `nodes`",
                    e.from, e.to
                )));
            }
            if !e.seconds.is_finite() || e.seconds < 0.0 {
                return Err(DomainError::Invalid(format!(
                    "edge {:?} - {:?}: `seconds` must be a finite number >= 0",
                    e.from, e.to
                )));
            }
        }
        let g = Self::build(nodes, edges);
        let reached = g.distances_from(0).iter().filter(|d| d.is_finite()).count();
        if reached != g.nodes.len() {
            return Err(DomainError::Invalid(format!(
                "the facility must be connected: {} of {} nodes cannot be reached from {:?}",
                g.nodes.len() - reached,
                g.nodes.len(),
                g.nodes[0].id
            )));
        }
        Ok(g)
    }

    /// Whether `id` is a node.
    #[must_use]
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// The kind of node `id`.
    #[must_use]
    pub fn kind(&self, id: &str) -> Option<NodeKind> {
        self.index.get(id).map(|&i| self.nodes[i].kind)
    }

    /// Shortest driving time from node index `from` to every node (infinite when unreachable).
    #[must_use]
    pub fn distances_from(&self, from: usize) -> Vec<f64> {
        let mut dist = vec![f64::INFINITY; self.nodes.len()];
        if from >= dist.len() {
            return dist;
        }
        let mut heap = BinaryHeap::new();
        dist[from] = 0.0;
        heap.push(HeapItem(0.0, from));
        while let Some(HeapItem(d, u)) = heap.pop() {
            if d > dist[u] {
                continue;
            }
            for &(v, w) in &self.adj[u] {
                let nd = d + w;
                if nd < dist[v] {
                    dist[v] = nd;
                    heap.push(HeapItem(nd, v));
                }
            }
        }
        dist
    }

    /// Shortest driving time from node `from` to every node, by id (`None` for an unknown node).
    #[must_use]
    pub fn distances(&self, from: &str) -> Option<HashMap<&str, f64>> {
        let &i = self.index.get(from)?;
        let d = self.distances_from(i);
        Some(
            self.nodes
                .iter()
                .zip(d)
                .map(|(n, d)| (n.id.as_str(), d))
                .collect(),
        )
    }

    /// The shortest route `from` → `to` (Dijkstra, stopping at the target): the node ids, both ends
    /// included, and the driving time. `None` when either node is unknown or unreachable.
    #[must_use]
    pub fn route(&self, from: &str, to: &str) -> Option<(Vec<String>, f64)> {
        let (&s, &t) = (self.index.get(from)?, self.index.get(to)?);
        let n = self.nodes.len();
        let mut dist = vec![f64::INFINITY; n];
        let mut prev = vec![usize::MAX; n];
        let mut heap = BinaryHeap::new();
        dist[s] = 0.0;
        heap.push(HeapItem(0.0, s));
        while let Some(HeapItem(d, u)) = heap.pop() {
            if u == t {
                break;
            }
            if d > dist[u] {
                continue;
            }
            for &(v, w) in &self.adj[u] {
                let nd = d + w;
                if nd < dist[v] {
                    dist[v] = nd;
                    prev[v] = u;
                    heap.push(HeapItem(nd, v));
                }
            }
        }
        if !dist[t].is_finite() {
            return None;
        }
        let mut path = vec![t];
        let mut at = t;
        while at != s {
            at = prev[at];
            path.push(at);
        }
        path.reverse();
        Some((
            path.into_iter().map(|i| self.nodes[i].id.clone()).collect(),
            dist[t],
        ))
    }
}
