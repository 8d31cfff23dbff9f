//! Import cycles between the top-level modules of a crate.
//!
//! A crate's modules are read from its root file (`src/lib.rs` or `src/main.rs`) by following
//! `mod` declarations, the way rustc does (`a.rs` or `a/mod.rs`, inline `mod a { .. }`). Every
//! path in the code that names a module of the crate, in a `use`, a type or an expression
//! (`crate::a::X`, `super::a`, `self::a`, or a child module by its bare name), and every
//! `crate::`/`super::`/`self::` path inside a macro's tokens, is an edge from the top-level module
//! that holds it to the top-level module it names. Items under `#[cfg(test)]` are left out: tests
//! may reach anywhere. A parent and its own children may use each other freely, since edges are
//! collapsed to top-level modules. A name the root re-exports (`pub use bus::EventBus;` in
//! `lib.rs`) stands for the module it comes from, so `crate::EventBus` is a use of `bus`. What is
//! reported is each group of top-level modules that
//! reach one another (a strongly connected component of more than one module), with the edges
//! that hold it together.
//!
//! Why not `cargo modules dependencies --acyclic`: that tool builds rust-analyzer, minutes of
//! compilation in every CI run, and its own cycle check also reports every type and its methods;
//! the graph needed here is only the one of `use` edges between top-level modules.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt, fs,
    path::{Path, PathBuf},
};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Where one module names another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// The source file.
    pub file: PathBuf,
    /// Its line, from 1.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The uses between a crate's top-level modules: for each (from, to) pair, where it happens.
#[derive(Debug, Default)]
pub struct ModuleGraph {
    /// The crate's top-level modules, by name.
    pub modules: BTreeSet<String>,
    /// Each edge between two different top-level modules, with every place that makes it.
    pub edges: BTreeMap<(String, String), Vec<Location>>,
}

/// A group of top-level modules that all reach one another through their uses.
#[derive(Debug, PartialEq, Eq)]
pub struct Cycle {
    /// The modules, sorted.
    pub modules: Vec<String>,
    /// The edges between them, with where each is made.
    pub edges: Vec<((String, String), Vec<Location>)>,
}

/// Reads the crate whose root file is `root` (its `src/lib.rs` or `src/main.rs`).
pub fn read_crate(root: &Path) -> Result<ModuleGraph, String> {
    let mut reader = Reader::default();
    let directory = root
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", root.display()))?;
    reader.read_file(root, &[], directory)?;
    let modules = reader
        .children
        .get(&Vec::new())
        .cloned()
        .unwrap_or_default();
    let mut graph = ModuleGraph {
        modules,
        ..ModuleGraph::default()
    };
    // Names the root imports or re-exports, resolved to the module they come from.
    let root_names: BTreeMap<String, String> = reader
        .uses
        .iter()
        .filter(|(from, _, _)| from.is_empty())
        .filter_map(|(_, target, _)| Some((target.last()?.clone(), target.first()?.clone())))
        .collect();
    for (from, target, location) in reader.uses {
        let (Some(from), Some(first)) = (from.first(), target.first()) else {
            continue; // The root itself is everyone's parent.
        };
        let to = match root_names.get(first) {
            Some(module) if !graph.modules.contains(first) => module,
            _ => first,
        };
        if from != to && graph.modules.contains(to) {
            graph
                .edges
                .entry((from.clone(), to.clone()))
                .or_default()
                .push(location);
        }
    }
    Ok(graph)
}

impl ModuleGraph {
    /// The groups of more than one top-level module that reach one another, largest first.
    pub fn cycles(&self) -> Vec<Cycle> {
        let mut cycles: Vec<Cycle> = strongly_connected(&self.modules, self.edges.keys())
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| Cycle {
                edges: self
                    .edges
                    .iter()
                    .filter(|((from, to), _)| component.contains(from) && component.contains(to))
                    .map(|(edge, locations)| (edge.clone(), locations.clone()))
                    .collect(),
                modules: component.into_iter().collect(),
            })
            .collect();
        cycles.sort_by_key(|cycle| std::cmp::Reverse(cycle.modules.len()));
        cycles
    }
}

/// The strongly connected components of the graph (Tarjan's algorithm; the graphs are small, so
/// recursion depth is the number of modules at most).
fn strongly_connected<'a>(
    nodes: &'a BTreeSet<String>,
    edges: impl Iterator<Item = &'a (String, String)>,
) -> Vec<BTreeSet<String>> {
    let mut successors: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges {
        successors.entry(from).or_default().push(to);
    }
    let mut state = Tarjan {
        successors,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        components: Vec::new(),
    };
    for node in nodes {
        if !state.index.contains_key(node.as_str()) {
            state.visit(node);
        }
    }
    state.components
}

struct Tarjan<'a> {
    successors: BTreeMap<&'a str, Vec<&'a str>>,
    index: BTreeMap<&'a str, usize>,
    low: BTreeMap<&'a str, usize>,
    stack: Vec<&'a str>,
    on_stack: BTreeSet<&'a str>,
    next: usize,
    components: Vec<BTreeSet<String>>,
}

impl<'a> Tarjan<'a> {
    fn visit(&mut self, node: &'a str) {
        self.index.insert(node, self.next);
        self.low.insert(node, self.next);
        self.next += 1;
        self.stack.push(node);
        self.on_stack.insert(node);
        for successor in self.successors.get(node).cloned().unwrap_or_default() {
            if !self.index.contains_key(successor) {
                self.visit(successor);
                let low = self.low[node].min(self.low[successor]);
                self.low.insert(node, low);
            } else if self.on_stack.contains(successor) {
                let low = self.low[node].min(self.index[successor]);
                self.low.insert(node, low);
            }
        }
        if self.low[node] == self.index[node] {
            let mut component = BTreeSet::new();
            while let Some(member) = self.stack.pop() {
                self.on_stack.remove(member);
                component.insert(member.to_owned());
                if member == node {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

/// Follows `mod` declarations from the root file and records every use of a crate module.
#[derive(Default)]
struct Reader {
    /// Each module's child modules, by the module's path (the root's is empty).
    children: BTreeMap<Vec<String>, BTreeSet<String>>,
    /// (using module, used path resolved from the crate root, where).
    uses: Vec<(Vec<String>, Vec<String>, Location)>,
}

impl Reader {
    /// Reads `file`, the body of `module`, whose child modules' files are in `directory`.
    fn read_file(
        &mut self,
        file: &Path,
        module: &[String],
        directory: &Path,
    ) -> Result<(), String> {
        let text =
            fs::read_to_string(file).map_err(|error| format!("{}: {error}", file.display()))?;
        let parsed =
            syn::parse_file(&text).map_err(|error| format!("{}: {error}", file.display()))?;
        self.read_items(&parsed.items, file, module, directory)
    }

    fn read_items(
        &mut self,
        items: &[syn::Item],
        file: &Path,
        module: &[String],
        directory: &Path,
    ) -> Result<(), String> {
        let children: BTreeSet<String> = items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Mod(child) if !test_only(&child.attrs) => Some(child.ident.to_string()),
                _ => None,
            })
            .collect();
        self.children.insert(module.to_vec(), children.clone());
        let mut visitor = UseVisitor {
            reader: self,
            file,
            module,
            children: &children,
        };
        for item in items {
            if !matches!(item, syn::Item::Mod(_)) {
                visitor.visit_item(item);
            }
        }
        for item in items {
            let syn::Item::Mod(child) = item else {
                continue;
            };
            if test_only(&child.attrs) {
                continue;
            }
            let name = child.ident.to_string();
            let mut path = module.to_vec();
            path.push(name.clone());
            let child_directory = directory.join(&name);
            match &child.content {
                Some((_, items)) => self.read_items(items, file, &path, &child_directory)?,
                None => {
                    let flat = directory.join(format!("{name}.rs"));
                    let nested = child_directory.join("mod.rs");
                    let child_file = if flat.exists() { flat } else { nested };
                    self.read_file(&child_file, &path, &child_directory)?;
                }
            }
        }
        Ok(())
    }
}

/// Whether an item exists only in test builds (`#[cfg(test)]`).
fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .parse_args::<syn::Ident>()
                .is_ok_and(|ident| ident == "test")
    })
}

struct UseVisitor<'r, 'p> {
    reader: &'r mut Reader,
    file: &'p Path,
    module: &'p [String],
    children: &'p BTreeSet<String>,
}

impl UseVisitor<'_, '_> {
    /// Records `segments`, a path written in this module, if it names a module of the crate.
    fn record(&mut self, segments: &[String], span: proc_macro2::Span) {
        let Some(first) = segments.first() else {
            return;
        };
        let resolved: Vec<String> = match first.as_str() {
            "crate" => segments[1..].to_vec(),
            "self" => [self.module, &segments[1..]].concat(),
            "super" => {
                let supers = segments.iter().take_while(|s| *s == "super").count();
                let kept = self.module.len().saturating_sub(supers);
                [&self.module[..kept], &segments[supers..]].concat()
            }
            name if self.children.contains(name) => [self.module, segments].concat(),
            _ => return,
        };
        let location = Location {
            file: self.file.to_path_buf(),
            line: span.start().line,
        };
        self.reader
            .uses
            .push((self.module.to_vec(), resolved, location));
    }

    /// Finds `crate::a`, `super::a` and `self::a` in a macro's tokens.
    fn record_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Group(group) => self.record_tokens(group.stream()),
                TokenTree::Ident(ident)
                    if ["crate", "super", "self"].contains(&ident.to_string().as_str()) =>
                {
                    let mut segments = vec![ident.to_string()];
                    let mut rest = &trees[i + 1..];
                    while let [
                        TokenTree::Punct(a),
                        TokenTree::Punct(b),
                        TokenTree::Ident(next),
                        ..,
                    ] = rest
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        rest = &rest[3..];
                    }
                    if segments.len() > 1 {
                        self.record(&segments, ident.span());
                    }
                }
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for UseVisitor<'_, '_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::Type(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !test_only(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if !test_only(&item.attrs) {
            syn::visit::visit_impl_item_fn(self, item);
        }
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // Modules are read by `Reader::read_items`, each with its own path.
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let mut flattened = Vec::new();
        flatten_use(&item.tree, &mut Vec::new(), &mut flattened);
        for segments in flattened {
            self.record(&segments, item.use_token.span);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 {
            let span = path.segments[0].ident.span();
            self.record(&segments, span);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.record_tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// Every path a `use` tree names, as segments (a glob's is its prefix).
fn flatten_use(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            flatten_use(&path.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(name) => {
            out.push([prefix.as_slice(), &[name.ident.to_string()]].concat())
        }
        syn::UseTree::Rename(rename) => {
            out.push([prefix.as_slice(), &[rename.ident.to_string()]].concat())
        }
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(group) => {
            for tree in &group.items {
                flatten_use(tree, prefix, out);
            }
        }
    }
}
