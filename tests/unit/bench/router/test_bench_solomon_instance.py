"""Parsing Solomon instances in LKH-3's CVRPTW format and the DIMACS distance convention."""

import pytest

from bench.router.instance import default_data_dir, dimacs_distance10, load_instances, parse_vrptw

TINY = """NAME : T1
TYPE : CVRPTW
DIMENSION : 3
CAPACITY : 50
SERVICE_TIME : 7
NODE_COORD_SECTION
1 0 0
2 3 4
3 1 1
DEMAND_SECTION
1 0
2 5
3 6
TIME_WINDOW_SECTION
1 0 100
2 10 20
3 0 90
DEPOT_SECTION
1
-1
EOF
"""


def test_parse_inline_instance_maps_file_ids_to_nodes_with_depot_first():
    """Node 1 of the file becomes node 0; the header SERVICE_TIME applies to customers only."""
    inst = parse_vrptw(TINY)
    assert inst.name == "T1"
    assert inst.n_customers == 2
    assert inst.capacity == 50
    assert (inst.x[1], inst.y[1]) == (3.0, 4.0)
    assert inst.demand == (0, 5, 6)
    assert (inst.ready[1], inst.due[1]) == (10, 20)
    assert inst.service == (0, 7, 7)
    assert inst.service10(1) == 70 and inst.due10(0) == 1000


def test_dimacs_distance_is_truncated_to_one_decimal():
    """floor(10 * euclid): 3-4-5 is exact, sqrt(2) = 1.414... becomes 14 tenths, never 15."""
    assert dimacs_distance10(0, 0, 3, 4) == 50
    assert dimacs_distance10(0, 0, 1, 1) == 14
    assert dimacs_distance10(0, 0, 1, 2) == 22  # sqrt(5) = 2.236
    inst = parse_vrptw(TINY)
    assert inst.dist10[0][1] == inst.dist10[1][0] == 50
    assert inst.dist10[1][1] == 0


def test_rejects_a_file_with_node_ids_that_are_not_consecutive():
    """A broken file fails loudly instead of silently shifting customers."""
    broken = TINY.replace("3 1 1\n", "4 1 1\n")
    with pytest.raises(ValueError):
        parse_vrptw(broken)


@pytest.mark.skipif(not default_data_dir().exists(), reason="Solomon data not present")
def test_real_r101_counts_first_rows_and_bks():
    """R101 from ../shared/bench/solomon: 100 customers, its first rows and its DIMACS BKS."""
    (inst,) = load_instances(names=["R101"])
    assert inst.n_customers == 100 and inst.fleet == 25
    assert inst.capacity == 200 and inst.family == "R1"
    assert (inst.x[0], inst.y[0], inst.ready[0], inst.due[0]) == (35.0, 35.0, 0, 230)
    assert (inst.x[1], inst.y[1], inst.demand[1]) == (41.0, 49.0, 10)
    assert (inst.ready[1], inst.due[1], inst.service[1]) == (161, 171, 10)
    assert inst.bks_distance == 1637.7 and inst.bks_vehicles == 20


@pytest.mark.skipif(not default_data_dir().exists(), reason="Solomon data not present")
def test_all_56_instances_load_with_a_bks():
    """Every instance file parses and has a best-known solution to compare with."""
    instances = load_instances()
    assert len(instances) == 56
    assert all(i.n_customers == 100 and i.bks_distance for i in instances)
    assert {i.family for i in instances} == {"C1", "C2", "R1", "R2", "RC1", "RC2"}
