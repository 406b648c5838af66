/** A starter snippet per language, each ending where a completion makes sense. */
export const SNIPPETS: Record<string, string> = {
  python: `import math


def circle_area(radius):
    """Area of a circle of the given radius."""
    return `,
  javascript: `// Sum of the numbers in an array.
function sum(values) {
  let total = 0;
  for (const v of values) {
    total += v;
  }
  return `,
  typescript: `interface Point {
  x: number;
  y: number;
}

function distance(a: Point, b: Point): number {
  return `,
  rust: `/// The larger of two numbers.
fn max(a: i32, b: i32) -> i32 {
    if a > b { a } else { `,
};

export const LANGUAGES = Object.keys(SNIPPETS);
