//! Renders a compiled pipeline's DAG as Mermaid, Graphviz DOT or PlantUML.

use crate::compile::Pipeline;
use crate::stage::StageKind;

/// Output formats of `smelt graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    /// Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
    /// PlantUML activity-style component diagram.
    PlantUml,
}

fn ident(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// Renders the DAG. Edges are labelled with the number of columns they carry.
pub fn render(p: &Pipeline, format: GraphFormat) -> String {
    let mut out = String::new();
    let edges: Vec<(String, String, usize)> = p
        .order
        .iter()
        .flat_map(|&n| {
            p.inputs_of(n)
                .into_iter()
                .map(move |i| (p.graph[i].name.clone(), p.graph[n].name.clone(), p.graph[i].schema.fields().len()))
        })
        .collect();
    match format {
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for &n in &p.order {
                let s = &p.graph[n];
                let label = format!("{}<br/><i>{}</i>", s.name, s.type_name);
                let shape = match s.config.kind() {
                    StageKind::Source => format!("[(\"{label}\")]"),
                    StageKind::Sink => format!("[/\"{label}\"/]"),
                    StageKind::Barrier => format!("{{{{\"{label}\"}}}}"),
                    _ => format!("[\"{label}\"]"),
                };
                out.push_str(&format!("    {}{}\n", ident(&s.name), shape));
            }
            for (a, b, cols) in &edges {
                out.push_str(&format!("    {} -->|{} cols| {}\n", ident(a), cols, ident(b)));
            }
        }
        GraphFormat::Dot => {
            out.push_str(&format!("digraph \"{}\" {{\n    rankdir=LR;\n", p.dataset));
            for &n in &p.order {
                let s = &p.graph[n];
                let shape = match s.config.kind() {
                    StageKind::Source => "cylinder",
                    StageKind::Sink => "folder",
                    StageKind::Barrier => "hexagon",
                    _ => "box",
                };
                out.push_str(&format!(
                    "    \"{}\" [shape={shape}, label=\"{}\\n({})\"];\n",
                    s.name, s.name, s.type_name
                ));
            }
            for (a, b, cols) in &edges {
                out.push_str(&format!("    \"{a}\" -> \"{b}\" [label=\"{cols} cols\"];\n"));
            }
            out.push_str("}\n");
        }
        GraphFormat::PlantUml => {
            out.push_str("@startuml\nleft to right direction\n");
            for &n in &p.order {
                let s = &p.graph[n];
                let kw = match s.config.kind() {
                    StageKind::Source => "database",
                    StageKind::Sink => "folder",
                    StageKind::Barrier => "queue",
                    _ => "component",
                };
                out.push_str(&format!("{kw} \"{}\\n({})\" as {}\n", s.name, s.type_name, ident(&s.name)));
            }
            for (a, b, cols) in &edges {
                out.push_str(&format!("{} --> {} : {} cols\n", ident(a), ident(b), cols));
            }
            out.push_str("@enduml\n");
        }
    }
    out
}
