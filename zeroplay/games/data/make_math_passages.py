"""Writes `math_passages.jsonl`: short factual passages on school mathematics, the default
knowledge base of the PasoDoble game (one JSON object per line: {"id", "topic", "text"}).

    python zeroplay/games/data/make_math_passages.py

The passages are generated from templates over exact facts (computed here, so every number in
them is correct) plus a few hand-written ones; they were written for zeroplay, not copied.
"""
import json
import math
import os

NAMES = {3: "triangle", 4: "quadrilateral", 5: "pentagon", 6: "hexagon", 7: "heptagon", 8: "octagon",
         9: "nonagon", 10: "decagon", 12: "dodecagon"}


def polygons():
    for n, name in NAMES.items():
        s = (n - 2) * 180
        each = s / n
        each_s = f"{each:g}" if each == int(each) else f"about {each:.2f}"
        ext = 360 / n
        ext_s = f"{ext:g}" if ext == int(ext) else f"about {ext:.2f}"
        yield "geometry", (
            f"A {name} has {n} sides. The interior angles of any {name} add up to (n - 2) x 180 = {s} "
            f"degrees, so each interior angle of a regular {name} measures {each_s} degrees and each exterior "
            f"angle measures {ext_s} degrees. A {name} has n(n - 3)/2 = {n * (n - 3) // 2} diagonals.")


def divisibility():
    rules = {
        2: "its last digit is even",
        3: "the sum of its digits is divisible by 3",
        4: "the number formed by its last two digits is divisible by 4",
        5: "its last digit is 0 or 5",
        6: "it is divisible by both 2 and 3",
        8: "the number formed by its last three digits is divisible by 8",
        9: "the sum of its digits is divisible by 9",
        10: "its last digit is 0",
        11: "the alternating sum of its digits is divisible by 11",
    }
    examples = {2: 7358, 3: 5271, 4: 9316, 5: 4085, 6: 2736, 8: 15048, 9: 8163, 10: 7290, 11: 918082}
    for d, rule in rules.items():
        x = examples[d]
        assert x % d == 0
        yield "number theory", (
            f"Divisibility by {d}: a whole number is divisible by {d} exactly when {rule}. For example, "
            f"{x} is divisible by {d}, since {x} = {d} x {x // d}.")


def primes():
    def is_prime(k):
        return k > 1 and all(k % p for p in range(2, int(k ** 0.5) + 1))
    for lo in (1, 101, 201, 301, 401):
        ps = [k for k in range(lo, lo + 100) if is_prime(k)]
        yield "number theory", (
            f"Between {lo} and {lo + 99} there are {len(ps)} prime numbers; the smallest is {ps[0]} and the "
            f"largest is {ps[-1]}. A prime number has exactly two positive divisors, 1 and itself; 1 is not prime.")
    for n in (12, 36, 60, 72, 84, 90, 96, 100, 120, 360):
        divs = [d for d in range(1, n + 1) if n % d == 0]
        fac, m, p = [], n, 2
        while m > 1:
            while m % p == 0:
                fac.append(p)
                m //= p
            p += 1
        yield "number theory", (
            f"The prime factorisation of {n} is {' x '.join(map(str, fac))}. The number {n} has {len(divs)} "
            f"positive divisors, whose sum is {sum(divs)}. If n = p^a q^b ..., the number of divisors is "
            f"(a + 1)(b + 1)...")


def gcd_lcm():
    for a, b in ((12, 18), (24, 36), (14, 21), (35, 49), (48, 180), (63, 84), (27, 45), (100, 75)):
        g = math.gcd(a, b)
        yield "number theory", (
            f"The greatest common divisor of {a} and {b} is {g} and their least common multiple is "
            f"{a * b // g}. For any two positive integers, gcd(a, b) x lcm(a, b) = a x b; here {g} x "
            f"{a * b // g} = {a * b}. The Euclidean algorithm finds the gcd by repeated division with remainder.")


def pythagoras():
    for a, b in ((3, 4), (5, 12), (8, 15), (7, 24), (20, 21), (9, 40), (6, 8), (12, 35)):
        c = math.isqrt(a * a + b * b)
        assert c * c == a * a + b * b
        yield "geometry", (
            f"In a right triangle with legs a and b and hypotenuse c, the Pythagorean theorem states a^2 + b^2 = c^2. "
            f"The legs {a} and {b} give {a * a} + {b * b} = {c * c}, so the hypotenuse is {c}. The triangle's area is "
            f"ab/2 = {a * b / 2:g} and its perimeter is {a + b + c}.")


def circles():
    for r in (1, 2, 3, 5, 7, 10):
        yield "geometry", (
            f"A circle of radius {r} has diameter {2 * r}, circumference 2 pi r = {2 * r} pi "
            f"(about {2 * math.pi * r:.2f}) "
            f"and area pi r^2 = {r * r} pi (about {math.pi * r * r:.2f}). A sphere of the same radius has surface "
            f"area 4 pi r^2 = {4 * r * r} pi and volume (4/3) pi r^3 = {sp(4 * r ** 3, 3)} pi.")


def sp(num, den):
    g = math.gcd(num, den)
    num, den = num // g, den // g
    return str(num) if den == 1 else f"{num}/{den}"


def sequences():
    for a, d in ((2, 3), (5, 4), (1, 2), (10, -3), (7, 7)):
        n = 20
        yield "algebra", (
            f"An arithmetic sequence starts at {a} with common difference {d}: {a}, {a + d}, {a + 2 * d}, ... Its n-th "
            f"term is a + (n - 1)d, so the {n}th term is {a + (n - 1) * d}, and the sum of the first n terms is "
            f"n(2a + (n - 1)d)/2, which for n = {n} is {n * (2 * a + (n - 1) * d) // 2}.")
    for a, r in ((1, 2), (3, 3), (2, 5), (5, 2)):
        n = 8
        yield "algebra", (
            f"A geometric sequence starts at {a} with common ratio {r}: {a}, {a * r}, {a * r * r}, ... "
            f"Its n-th term is "
            f"a r^(n - 1), so the {n}th term is {a * r ** (n - 1)}, and the sum of the first n terms is "
            f"a (r^n - 1)/(r - 1), which for n = {n} is {a * (r ** n - 1) // (r - 1)}.")


def quadratics():
    for r1, r2 in ((2, 3), (-1, 4), (5, -5), (1, 1), (-2, -7), (3, 6)):
        b, c = -(r1 + r2), r1 * r2
        disc = b * b - 4 * c
        sb = f"+ {b}x" if b >= 0 else f"- {-b}x"
        sc = f"+ {c}" if c >= 0 else f"- {-c}"
        f1 = f"(x - {r1})" if r1 >= 0 else f"(x + {-r1})"
        f2 = f"(x - {r2})" if r2 >= 0 else f"(x + {-r2})"
        yield "algebra", (
            f"The quadratic equation x^2 {sb} {sc} = 0 factors as {f1}{f2} = 0, so its roots "
            f"are {r1} and {r2}. Its discriminant b^2 - 4ac equals {disc}. By Vieta's formulas the sum of the roots "
            f"is -b/a = {r1 + r2} and their product is c/a = {c}.")


def combinatorics():
    for n, k in ((5, 2), (6, 3), (8, 2), (10, 3), (7, 4), (12, 5)):
        yield "combinatorics", (
            f"The number of ways to choose {k} objects from {n} distinct objects, ignoring order, is the binomial "
            f"coefficient C({n}, {k}) = {n}!/({k}!({n - k})!) = {math.comb(n, k)}. If order matters, the count is "
            f"{n}!/({n - k})! = {math.perm(n, k)}.")
    for n in (4, 5, 6, 7):
        yield "combinatorics", (
            f"There are {n}! = {math.factorial(n)} ways to arrange {n} distinct books in a row, and ({n} - 1)! = "
            f"{math.factorial(n - 1)} ways to seat {n} people around a round table when rotations count as the same.")


def probability():
    for s in (2, 3, 4, 7, 10, 12):
        ways = sum(1 for i in range(1, 7) for j in range(1, 7) if i + j == s)
        yield "probability", (
            f"When two fair six-sided dice are rolled there are 36 equally likely outcomes. A sum of {s} occurs in "
            f"{ways} of them, so its probability is {sp(ways, 36)}. The expected value of the sum is 7.")
    for n in (3, 4, 5):
        yield "probability", (
            f"Tossing a fair coin {n} times gives 2^{n} = {2 ** n} equally likely sequences. The probability "
            f"of exactly two heads is C({n}, 2)/2^{n} = {sp(math.comb(n, 2), 2 ** n)}, and the probability "
            f"of at least one head is 1 - 1/2^{n} = {sp(2 ** n - 1, 2 ** n)}.")


def solids():
    for a in (2, 3, 4, 5):
        yield "geometry", (
            f"A cube with edge length {a} has volume a^3 = {a ** 3}, surface area 6a^2 = {6 * a * a}, face diagonal "
            f"a sqrt(2) = {a} sqrt(2) and space diagonal a sqrt(3) = {a} sqrt(3). A cube has 8 vertices, 12 edges and "
            f"6 faces, and V - E + F = 2.")


HAND = [
    ("algebra", "The slope of the line through the points (x1, y1) and (x2, y2) is (y2 - y1)/(x2 - x1). Two "
     "non-vertical lines are parallel when their slopes are equal and perpendicular when the product of their "
     "slopes is -1. The line y = mx + b crosses the y-axis at (0, b)."),
    ("algebra", "For positive a and b, the arithmetic mean (a + b)/2 is at least the geometric mean sqrt(ab), with "
     "equality exactly when a = b. For example, for 4 and 9 the arithmetic mean is 6.5 and the geometric mean is 6."),
    ("algebra", "Logarithms turn products into sums: log_b(xy) = log_b x + log_b y, log_b(x^k) = k log_b x, and the "
     "change of base formula is log_b x = log_c x / log_c b. For instance log_2 32 = 5 and log_10 1000 = 3."),
    ("algebra", "The absolute value |x| is the distance from x to 0 on the number line. The inequality |x - 3| < 2 "
     "describes the numbers whose distance from 3 is less than 2, that is 1 < x < 5."),
    ("number theory", "Two integers are congruent modulo n when they leave the same remainder on division by n. "
     "Since 10 is congruent to 1 modulo 9, every integer is congruent modulo 9 to the sum of its digits; "
     "for example 2024 leaves remainder 8 when divided by 9."),
    ("number theory", "The last digit of a power cycles. Powers of 2 end in 2, 4, 8, 6 and then repeat, so 2^n ends "
     "in 6 whenever n is a positive multiple of 4; for example 2^20 = 1048576."),
    ("geometry", "The area of a triangle is half the base times the height. By Heron's formula, a triangle with sides "
     "13, 14 and 15 has semi-perimeter 21 and area sqrt(21 x 8 x 7 x 6) = 84."),
    ("geometry", "In any triangle the angles add up to 180 degrees, and the longest side lies opposite the largest "
     "angle. The triangle inequality says each side is shorter than the sum of the other two."),
    ("geometry", "The distance between the points (x1, y1) and (x2, y2) in the plane is sqrt((x2 - x1)^2 + "
     "(y2 - y1)^2), and their midpoint is ((x1 + x2)/2, (y1 + y2)/2). The distance from (1, 2) to (4, 6) is 5."),
    ("geometry", "A trapezoid with parallel sides of lengths a and b and height h has area (a + b)h/2. A trapezoid "
     "with parallel sides 6 and 10 and height 4 has area 32."),
    ("statistics", "The mean of a list of numbers is their sum divided by how many there are, the median is the "
     "middle value once they are sorted, and the mode is the most frequent value. For 2, 3, 3, 5, 7 the mean is "
     "4, the median is 3 and the mode is 3."),
    ("arithmetic", "Percent means per hundred. Increasing a quantity by 20 percent multiplies it by 1.2, and "
     "decreasing the result by 20 percent multiplies it by 0.8, so the net effect is a factor 0.96, a 4 percent "
     "decrease."),
    ("arithmetic", "To add fractions, write them over a common denominator: 1/4 + 1/6 = 3/12 + 2/12 = 5/12. The "
     "least common denominator of two fractions is the least common multiple of their denominators."),
    ("arithmetic", "Simple interest on a principal P at an annual rate r for t years is Prt, while compound interest "
     "gives P(1 + r)^t. At 10 percent a year, 1000 grows to 1210 after two years with annual compounding."),
    ("combinatorics", "The pigeonhole principle: if n + 1 objects are put into n boxes, some box holds at least two "
     "objects. Among any 13 people, at least two were born in the same month."),
    ("combinatorics", "The inclusion-exclusion principle counts a union: |A or B| = |A| + |B| - |A and B|. Between 1 "
     "and 100 there are 50 multiples of 2, 33 multiples of 3 and 16 multiples of 6, so 67 numbers are divisible by "
     "2 or 3."),
]


def main():
    rows = []
    for gen in (polygons, divisibility, primes, gcd_lcm, pythagoras, circles, sequences, quadratics,
                combinatorics, probability, solids):
        for topic, text in gen():
            rows.append((topic, text))
    rows += HAND
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "math_passages.jsonl")
    with open(out, "w") as f:
        for i, (topic, text) in enumerate(rows):
            f.write(json.dumps({"id": f"mp-{i:03d}", "topic": topic, "text": text}) + "\n")
    print(f"{len(rows)} passages -> {out}")


if __name__ == "__main__":
    main()
