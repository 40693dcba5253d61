"""A picture of a route: Mermaid and Graphviz DOT text, and SVG through the `dot` binary."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

from esb.errors import EsbError
from esb.routes.model import Route
from esb.steps.base import Step

OTHERWISE = "otherwise"  # the edge a choice takes when no condition holds
DEFAULT_EXCHANGE = "(default exchange)"  # how `exchange: ""` is drawn


class GraphError(EsbError):
    """The picture could not be drawn (e.g. Graphviz is not installed)."""


@dataclasses.dataclass(frozen=True)
class Node:
    id: str
    lines: tuple[str, ...]
    shape: str  # exchange, queue, step, choice, end


@dataclasses.dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""
    dashed: bool = False


@dataclasses.dataclass
class Graph:
    """Nodes and edges in drawing order; both renderers read the same graph."""

    nodes: list[Node] = dataclasses.field(default_factory=list)
    edges: list[Edge] = dataclasses.field(default_factory=list)
    exchanges: dict[str, str] = dataclasses.field(default_factory=dict)

    def add(self, node: Node) -> str:
        self.nodes.append(node)
        return node.id

    def exchange(self, name: str) -> str:
        """The node of an exchange, drawn once however many steps publish to it."""
        if name not in self.exchanges:
            text = name or DEFAULT_EXCHANGE
            self.exchanges[name] = self.add(Node(f"ex{len(self.exchanges) + 1}", (text,), "exchange"))
        return self.exchanges[name]

    def link(self, pending: list[tuple[str, str]], target: str) -> None:
        self.edges.extend(Edge(source, target, label) for source, label in pending)


def build_graph(route: Route) -> Graph:
    """Source exchange → queue → steps (choices fan out and rejoin) → done."""
    graph = Graph()
    exchange = graph.exchange(route.source.exchange) if route.source.exchange else None
    queue = graph.add(Node("queue", (f"queue {route.source.queue}",), "queue"))
    if exchange:
        graph.edges.append(Edge(exchange, queue, route.source.binding_key))
    counter = iter(range(1, 10_000))
    pending = _chain(graph, route.steps, [(queue, "")], counter)
    graph.link(pending, graph.add(Node("done", ("done",), "end")))
    return graph


def _chain(graph: Graph, steps: tuple[Step, ...], pending: list[tuple[str, str]], counter) -> list[tuple[str, str]]:
    """Draw `steps` in a row after the `pending` edges; return the edges leaving the row."""
    for step in steps:
        node = graph.add(_node(step, f"s{next(counter)}"))
        graph.link(pending, node)
        pending = [(node, "")]
        if step.kind == "publish":
            graph.edges.append(Edge(node, graph.exchange(step.exchange), step.routing_key, dashed=True))
        branches = step.branches()
        if branches:
            pending = _fan_out(graph, node, branches, counter)
    return pending


def _fan_out(graph: Graph, node: str, branches, counter) -> list[tuple[str, str]]:
    """Each branch starts at the diamond; all of them (and `otherwise`) rejoin after it."""
    exits: list[tuple[str, str]] = []
    for condition, steps in branches:
        exits += _chain(graph, steps, [(node, str(condition))], counter)
    if not any(str(condition).lower() == OTHERWISE for condition, _ in branches):
        exits.append((node, OTHERWISE))
    return exits


def _node(step: Step, node_id: str) -> Node:
    what = f"{step.adapter}.{step.operation}" if step.kind == "to" else step.kind
    return Node(node_id, (step.label, what), "choice" if step.branches() else "step")


_MERMAID_SHAPES = {"exchange": '{{{{"{}"}}}}', "queue": '[("{}")]', "step": '["{}"]',
                   "choice": '{{"{}"}}', "end": '(["{}"])'}


def mermaid(route: Route) -> str:
    """The route as a Mermaid flowchart (left to right)."""
    graph = build_graph(route)
    lines = ["flowchart LR"]
    lines += [f"    {n.id}" + _MERMAID_SHAPES[n.shape].format("<br/>".join(map(_mermaid_text, n.lines)))
              for n in graph.nodes]
    lines += [f"    {e.source} {_mermaid_arrow(e)} {e.target}" for e in graph.edges]
    return "\n".join(lines) + "\n"


def _mermaid_arrow(edge: Edge) -> str:
    arrow = "-.->" if edge.dashed else "-->"
    return f'{arrow}|"{_mermaid_text(edge.label)}"|' if edge.label else arrow


def _mermaid_text(text: str) -> str:
    # Mermaid reads `#name;` as an entity, `"` ends the label and `<` may open HTML.
    return text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;")


_DOT_SHAPES = {"exchange": 'shape=hexagon', "queue": 'shape=cylinder', "step": 'shape=box, style=rounded',
               "choice": 'shape=diamond', "end": 'shape=oval'}


def dot(route: Route) -> str:
    """The route as a Graphviz digraph (left to right)."""
    graph = build_graph(route)
    lines = [f"digraph {_dot_text(route.name)} {{", "    rankdir=LR;", '    node [fontname="Helvetica"];']
    lines += [f'    {n.id} [label={_dot_text(chr(10).join(n.lines))}, {_DOT_SHAPES[n.shape]}];'
              for n in graph.nodes]
    lines += [f"    {e.source} -> {e.target}{_dot_edge_attributes(e)};" for e in graph.edges]
    return "\n".join(lines + ["}"]) + "\n"


def _dot_edge_attributes(edge: Edge) -> str:
    attributes = ([f"label={_dot_text(edge.label)}"] if edge.label else []) + (["style=dashed"] if edge.dashed else [])
    return f" [{', '.join(attributes)}]" if attributes else ""


def _dot_text(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def svg(route: Route, path: str | Path) -> Path:
    """Render the route to an SVG file with Graphviz's `dot`; return the file written."""
    binary = shutil.which("dot")
    if binary is None:
        raise GraphError("drawing SVG needs Graphviz's `dot` program, which is not on PATH — "
                         "install graphviz (apt-get install graphviz), or use --format mermaid or dot")
    path = Path(path)
    done = subprocess.run([binary, "-Tsvg", "-o", str(path)], input=dot(route), text=True,
                          capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise GraphError(f"dot could not draw the route: {done.stderr.strip()}")
    return path
