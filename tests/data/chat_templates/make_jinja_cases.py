"""Writes jinja_cases.json: small templates, each exercising one Jinja construct, and what jinja2
renders from them in the environment transformers builds for chat templates (trim_blocks,
lstrip_blocks, loopcontrols, ImmutableSandboxedEnvironment, transformers' tojson,
raise_exception, strftime_now). ranktune's C++ and Python tests read the committed JSON; this script
needs jinja2 only to regenerate it:  $RANKTUNE_HFREF/bin/python make_jinja_cases.py
"""
import json
import os

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class AssistantTracker(jinja2.ext.Extension):
    """transformers' {% generation %} block, reduced to rendering its body (what ranktune does)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                    extensions=[AssistantTracker, jinja2.ext.loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception

MSGS = [{"role": "system", "content": "  Be brief.  "}, {"role": "user", "content": "Hi, ü ∑ 😀"},
        {"role": "assistant", "content": "Hello!"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & 'later'",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer",
        "maximum": 100.0, "minimum": 1e-05}}, "required": ["city"]}}}

# name, template, variables; an optional 4th element marks a case whose error message differs in
# wording from jinja2's: then only that substring of ranktune's message is checked.
CASES = [
    # ---- whitespace control ----
    ("trim_blocks", "{% if true %}\nyes\n{% endif %}\nend", {}),
    ("lstrip_blocks", "a\n    {% if true %}\n    b\n    {% endif %}\nc", {}),
    ("lstrip_not_for_variables", "a\n    {{ 'x' }}\n", {}),
    ("minus_strips_newlines", "a  \n\n  {%- if true -%}  \n\n b {{- ' c ' -}}\n\n d{% endif %}", {}),
    ("plus_keeps_whitespace", "a\n  {%+ if true %}b{% endif +%}\nc", {}),
    ("comments", "a\n  {# note #}\nb{#- x -#}  c\n{# multi\nline #}", {}),
    ("trailing_newline_dropped", "x\n", {}),
    ("two_trailing_newlines", "x\n\n", {}),
    ("crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n", {}),
    ("raw_block", "{% raw %}{{ not rendered }}{% endraw %}", {}),
    # ---- expressions ----
    ("literals", "{{ 1 }} {{ -2 }} {{ 1.5 }} {{ 100.0 }} {{ 1e-5 }} {{ 2e20 }} {{ true }} {{ none }} {{ 'a' \"b\" }}", {}),
    ("string_escapes", "{{ 'a\\nb\\t\\'c\\' \\\"d\\\" \\\\ \\u00fc \\x41' }}", {}),
    ("list_and_dict_repr", "{{ [1, 'two', none, true, 2.5] }} {{ {'a': 1, 'b': [\"it's\"]} }} {{ (1,) }}", {}),
    ("arithmetic", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ 0.1 + 0.2 }}", {}),
    ("concat", "{{ 'a' ~ 1 ~ none ~ undefined_name ~ [1] }} {{ 'a' + 'b' }} {{ [1] + [2] }}", {}),
    ("comparisons", "{{ 1 == 1.0 }} {{ 1 < 2 < 3 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ {'a': 1, 'b': 2} == {'b': 2, 'a': 1} }} {{ true == 1 }}", {}),
    ("in_and_not_in", "{{ 'a' in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'x' not in {'k': 1} }} {{ 'content' in m }}", {"m": {"content": "x"}}),
    ("and_or_return_operands", "{{ '' or 'default' }} {{ 'a' and 'b' }} {{ none or 0 }} {{ not '' }}", {}),
    ("ternary", "{{ 'yes' if x else 'no' }} {{ 'yes' if not x else 'no' }}[{{ 'only' if false }}]", {"x": True}),
    ("filter_binds_tighter_than_plus", "{{ '<' + s | trim + '>' }} {{ -3 | abs }}", {"s": "  padded  "}),
    ("attribute_and_item", "{{ m.role }} {{ m['content'] }} {{ l[0] }} {{ l[-1] }} {{ l.0 }} {{ m.missing }}|{{ m['missing'] }}", {"m": {"role": "user", "content": "x"}, "l": [1, 2, 3]}),
    ("dict_methods_as_attributes", "{% for k, v in m.items() %}{{ k }}={{ v }};{% endfor %}{{ m.keys() | list }} {{ m.values() | list }} {{ m.get('a') }} {{ m.get('z', 'dflt') }}", {"m": {"b": 2, "a": 1}}),
    ("slices", "{{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[::2] }} {{ l[-2:] }} {{ s[1:3] }} {{ s[::-1] }} {{ l[5:] }}", {"l": [1, 2, 3, 4], "s": "häll😀"}),
    ("string_indexing_counts_code_points", "{{ s[1] }} {{ s | length }} {{ s[-1] }}", {"s": "ü😀x"}),
    ("string_methods", "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.strip(' x') }}|{{ s.upper() }}|{{ s.lower() }}|{{ 'hello world-x'.title() }}|{{ s.replace('x', 'y') }}|{{ s.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b c'.split(' ', 1) }}|{{ s.startswith(' x') }}|{{ s.endswith(('q', 'z ')) }}|{{ '-'.join(['a', 'b']) }}|{{ 'abcb'.find('b') }} {{ 'abcb'.count('b') }}", {"s": " xaz "}),
    ("unicode_whitespace_strip", "[{{ s | trim }}][{{ s.strip() }}]", {"s": "\u3000\u00a0 x \u2003\n"}),
    # ---- statements ----
    ("if_elif_else", "{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %} {% endfor %}", {}),
    ("for_loop_variables", "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}", {}),
    ("for_previtem_nextitem_cycle", "{% for x in [1, 2, 3] %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }} {{ loop.cycle('odd', 'even') }};{% endfor %}", {}),
    ("for_inline_if_counts_kept_items", "{% for k, v in d.items() if k != 'skip' %}{{ loop.index }}:{{ k }}={{ v }}{{ ',' if not loop.last }}{% endfor %}", {"d": {"a": 1, "skip": 2, "b": 3}}),
    ("for_else", "{% for x in [] %}x{% else %}empty{% endfor %} {% for x in none_list | default([]) %}{% else %}also{% endfor %}", {}),
    ("for_over_dict_and_undefined", "{% for k in d %}{{ k }}{% endfor %}|{% for x in nothing %}x{% endfor %}|", {"d": {"z": 1, "a": 2}}),
    ("break_and_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("nested_loops_and_scoping", "{% set x = 'outer' %}{% for i in [1, 2] %}{{ x }}{% set x = i %}{{ x }};{% endfor %}{{ x }}", {}),
    ("set_in_loop_does_not_carry_over", "{% for i in range(3) %}{% if i == 0 %}{% set y = 5 %}{% endif %}[{{ y }}]{% endfor %}", {}),
    ("namespace_carries_state", "{% set ns = namespace(count=0, last=none) %}{% for m in msgs %}{% if m.role == 'user' %}{% set ns.count = ns.count + 1 %}{% set ns.last = loop.index0 %}{% endif %}{% endfor %}{{ ns.count }} {{ ns.last }}", {"msgs": MSGS}),
    ("set_tuple_and_block", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set block %}in {{ a }}\n{% endset %}[{{ block }}]", {}),
    ("set_at_top_level_inside_if", "{% if true %}{% set z = 'set' %}{% endif %}{{ z }}", {}),
    ("macro_with_defaults_and_keywords", "{% macro tag(name, body='', close=true) %}<{{ name }}>{{ body }}{% if close %}</{{ name }}>{% endif %}{% endmacro %}{{ tag('a') }}{{ tag('b', 'x') }}{{ tag('c', close=false) }}", {}),
    ("macro_sees_later_globals", "{% macro m() %}{{ g }}{% endmacro %}{% set g = 'late' %}{{ m() }}", {}),
    ("recursive_macro", "{% macro count(n) %}{{ n }}{% if n > 0 %}{{ count(n - 1) }}{% endif %}{% endmacro %}{{ count(3) }}", {}),
    ("filter_block", "{% filter upper %}shout {{ 'this' }}{% endfilter %}", {}),
    ("generation_block", "{% for m in msgs %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% endif %}{% endfor %}", {"msgs": MSGS}),
    # ---- tests ----
    ("tests_types", "{{ 'x' is string }} {{ 1 is number }} {{ 1 is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ {} is mapping }} {{ [] is iterable }} {{ 'x' is iterable }} {{ 1 is iterable }} {{ none is none }} {{ x is defined }} {{ x is undefined }} {{ none is not none }} {{ [] is sequence }} {{ range is callable }}", {}),
    ("tests_values", "{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 'a' is equalto 'a' }} {{ 'a' is eq('b') }} {{ 2 is gt 1 }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ 2 is in [1, 2] }} {{ none is sameas none }}", {}),
    ("defined_on_missing_attribute", "{{ m.tool_calls is defined }} {{ m.content.content is defined }} {{ m.tool_calls is not defined }}", {"m": {"content": "text"}}),
    # ---- filters ----
    ("filter_tojson", "{{ t | tojson }}\n{{ t | tojson(indent=4) }}\n{{ [] | tojson(indent=2) }} {{ {} | tojson }} {{ 'ü<>&\\'\"\\\\\\n' | tojson }} {{ 'ü' | tojson(ensure_ascii=true) }} {{ {'b': 1, 'a': [1, 2]} | tojson(sort_keys=true, separators=(',', ':')) }}", {"t": TOOL}),
    ("filter_tojson_numbers", "{{ [1, 1.0, 100.0, 22.5, 1e-05, 1e16, 123456789012345678, true, none, -0.0] | tojson }}", {}),
    ("filter_strings", "{{ ' a ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ 'ab' | upper }}|{{ 'AB' | lower }}|{{ 'hello wORLD' | capitalize }}|{{ 'hello-world (x)' | title }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 1 | string }}|{{ none | string }}|{{ [1] | string }}|{{ 'a b  c' | wordcount }}", {}),
    ("filter_sequences", "{{ [3, 1, 2] | length }} {{ 'abc' | count }} {{ [3, 1, 2] | first }} {{ [3, 1, 2] | last }} {{ 'abc' | list }} {{ {'a': 1} | list }} {{ [1, 2] | join(', ') }} {{ [1, 2] | join }} {{ [3, 1, 2] | sort }} {{ ['b', 'A', 'c'] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ [1, 2, 1] | unique | list }} {{ [1, 2] | reverse | list }} {{ 'abc' | reverse }} {{ [1, 2, 3] | sum }}", {}),
    ("filter_items_and_dicts", "{% for k, v in d | items %}{{ k }}:{{ v }} {% endfor %}{{ d | length }} {{ nothing | items | list }}", {"d": {"x": 1, "y": [2]}}),
    ("filter_default", "{{ x | default('d') }} {{ '' | default('d') }} {{ '' | default('d', true) }} {{ none | d('n') }}", {}),
    ("filter_numbers", "{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ '2.5' | float }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ -4 | abs }}", {}),
    ("filter_select_reject_map", "{{ msgs | selectattr('role', 'equalto', 'user') | list | length }} {{ msgs | rejectattr('role', 'equalto', 'user') | map(attribute='role') | join(',') }} {{ [1, 2, 3, 4] | select('even') | list }} {{ [1, 2, 3, 4] | reject('odd') | list }} {{ ['a', 'b'] | map('upper') | list }} {{ msgs | selectattr('missing') | list }} {{ ['x', 'code_interpreter', 'y'] | reject('equalto', 'code_interpreter') | join(', ') }}", {"msgs": MSGS}),
    ("filter_indent", "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(width='> ', blank=true) }}", {}),
    ("filters_return_generators", "{{ [1, 2, 3] | select('odd') | list }} {{ 'true' if [] | select('odd') else 'false' }} {{ none | selectattr('a') | list }} {{ none | map('upper') | list }} {{ [1, 2] | reverse | first }} {{ {'a': 1} | items | list }}", {}),
    ("markup_escapes_plain_text", "{{ 'a' | safe + '<b>' }} {{ '<i>' ~ ('x' | safe) }} {{ '<p>' | e }} {{ '<p>' | e | e }} {{ '<' + '>' }}", {}),
    ("filter_escape", "{{ '<a href=\"x\">&\\'</a>' | e }}", {}),
    # ---- globals ----
    ("globals", "{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ range(3, 0, -1) | list }} {{ dict(a=1, b='x') }} {{ namespace(a=1).a }}", {}),
    # ---- undefined ----
    ("undefined_prints_empty_and_is_false", "[{{ nothing }}][{{ 'x' if nothing else 'y' }}][{{ nothing | length }}][{{ nothing | trim }}][{{ none.attr }}][{{ 'str'.attr }}]", {}),
    # ---- errors ----
    ("error_raise_exception", "{% if true %}{{ raise_exception('Conversation roles must alternate!') }}{% endif %}", {}),
    ("error_attribute_of_undefined", "{{ nothing.attr }}", {}),
    ("error_missing_key_then_attribute", "{{ m.tool_calls.function }}", {"m": {"role": "user"}}),
    ("error_missing_element", "{{ l[5].x }}", {"l": [1]}),
    ("error_sandbox_append", "{{ l.append(1) }}", {"l": []}),
    ("error_sandbox_pop", "{{ d.pop('a') }}", {"d": {"a": 1}}),
    ("error_call_undefined", "{{ not_a_function() }}", {}),
    ("error_add_undefined", "{{ nothing + 1 }}", {}),
    ("error_concat_str_int", "{{ 'a' + 1 }}", {}),
    ("error_division_by_zero", "{{ 1 / 0 }}", {}),
    ("error_iterate_none", "{% for x in none %}{% endfor %}", {}),
    ("error_tojson_undefined", "{{ nothing | tojson }}", {}),
    ("error_items_of_list", "{{ [1] | items | list }}", {}),
    ("error_tojson_of_generator", "{{ [1] | map('string') | tojson }}", {}),
    ("error_length_of_generator", "{{ [1] | select | length }}", {}),
    ("error_set_attribute_on_dict", "{% set d = {} %}{% set d.x = 1 %}", {}, "non-namespace"),
    ("error_unpack", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", {}),
]


def render(template, variables):
    try:
        return {"expected": env.from_string(template).render(**variables)}
    except Exception as e:  # noqa: BLE001 - every jinja2 error becomes an expected error message
        return {"expected_error": str(e)}


out = []
for case in CASES:
    name, template, variables = case[:3]
    entry = {"name": name, "template": template, "variables": variables}
    entry.update(render(template, variables))
    if len(case) > 3:
        entry["expected_error"] = case[3]
    out.append(entry)

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jinja_cases.json")
with open(path, "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False, indent=1)
    f.write("\n")
print(f"wrote {len(out)} cases to {path}")
